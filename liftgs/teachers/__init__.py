"""2D teachers (paper Sec 3.4, appendix A.1/A.4) and the pseudo-label cache.

* :class:`SyntheticTeacher` — labels from rendered instance ids + object attributes, with
  seeded knobs that imitate real models' errors (:class:`SyntheticNoise`);
* :class:`SamClipTeacher` — SAM automatic masks + CLIP image embeddings of each region;
* :class:`CaptionTeacher` — any segmenter + a captioner (red-box prompt) + a text encoder;
* :class:`PseudoLabelStore` — random access to the cache written by ``liftgs pseudolabel``.

Heavy teachers import transformers lazily, so ``import liftgs.teachers`` stays cheap.
"""

from liftgs.teachers.base import (Segmenter, Teacher, compact_segments, filter_small_segments, label_frames,
                                  masks_to_segments, scaled_min_area)
from liftgs.teachers.store import PseudoLabelStore, frame_key, read_labels, write_labels
from liftgs.teachers.synthetic import SyntheticNoise, SyntheticTeacher

__all__ = ["Teacher", "Segmenter", "label_frames", "compact_segments", "filter_small_segments",
           "masks_to_segments", "scaled_min_area", "PseudoLabelStore", "frame_key", "read_labels",
           "write_labels", "SyntheticNoise", "SyntheticTeacher", "SamClipTeacher", "CaptionTeacher"]


def __getattr__(name):  # lazy: these pull in transformers
    if name == "SamClipTeacher":
        from liftgs.teachers.samclip import SamClipTeacher

        return SamClipTeacher
    if name == "CaptionTeacher":
        from liftgs.teachers.caption import CaptionTeacher

        return CaptionTeacher
    raise AttributeError(name)
