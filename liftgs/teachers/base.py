"""The teacher contract and the segment-map helpers every teacher shares.

A teacher turns one frame into :class:`~liftgs.types.PseudoLabels`: a frame-local segment map
(Semantics) and one embedding per segment (Index2Semantics), paper Sec 3.4 and appendix A.1.
Segment indices never carry meaning across frames; training samples up to 8 of them per view
as pseudo queries.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from liftgs.types import Frame, PseudoLabels, Scene

__all__ = ["Teacher", "Segmenter", "label_frames", "compact_segments", "filter_small_segments",
           "scaled_min_area", "masks_to_segments"]


@runtime_checkable
class Teacher(Protocol):
    """``teacher(frame, scene) -> PseudoLabels``.

    ``scene`` is context some teachers need (the synthetic teacher reads object attributes);
    image teachers ignore it. ``settings()`` is recorded as provenance in the cache so that a
    resumed run never mixes labels from different teachers or settings.
    """

    name: str

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, frame: Frame, scene: Scene | None = None) -> PseudoLabels: ...


@runtime_checkable
class Segmenter(Protocol):
    """``segmenter(rgb [H, W, 3] uint8) -> segments [H, W] int32`` (-1 = none)."""

    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...


def label_frames(teacher: Teacher, frames: list[Frame], scene: Scene | None = None) -> list[PseudoLabels]:
    """Label several frames, batched when the teacher supports it (one text-encoder call)."""
    batched = getattr(teacher, "label_frames", None)
    if callable(batched):
        return batched(frames, scene)
    return [teacher(f, scene) for f in frames]


def compact_segments(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber a label map to 0..S-1 in increasing label order (-1 stays -1).

    Returns (map [H, W] int32, old label of each new index [S]). Linear time via a lookup
    table when labels are small non-negative ints (the common case), else ``np.unique``.
    """
    seg = np.asarray(segments)
    top = int(seg.max(initial=-1))
    if seg.size and int(seg.min()) >= -1 and top < 4 * seg.size + 1024:
        present = np.bincount((seg + 1).ravel(), minlength=top + 2)[1:] > 0  # [top + 1]
        ids = np.nonzero(present)[0]
        lut = np.full(top + 2, -1, dtype=np.int32)  # slot 0 <- label -1
        lut[ids + 1] = np.arange(ids.size, dtype=np.int32)
        return lut[seg + 1], ids
    ids, inverse = np.unique(seg, return_inverse=True)
    inverse = inverse.reshape(seg.shape).astype(np.int32)
    if ids.size and ids[0] < 0:
        return inverse - 1, ids[1:]
    return inverse, ids


def masks_to_segments(masks: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Paint boolean masks [K, H, W] into one index map; later masks in ``order`` win.

    Overlapping proposals (SAM) become a partition: paint large masks first so that smaller
    parts on top stay visible.
    """
    K, H, W = masks.shape
    segments = np.full((H, W), -1, dtype=np.int32)
    for k in (range(K) if order is None else order):
        segments[masks[k]] = k
    return segments


def filter_small_segments(labels: PseudoLabels, min_area: int) -> PseudoLabels:
    """Drop segments with fewer than ``min_area`` pixels and renumber the rest (order kept).

    Paper appendix A.1: masks smaller than 1024 px (at 512²) are too unreliable to supervise.
    """
    S = labels.num_segments
    if min_area <= 0 or S == 0:
        return labels
    seg = labels.segments
    area = np.bincount(seg[seg >= 0].ravel(), minlength=S)
    keep = area >= min_area
    if keep.all():
        return labels
    remap = np.full(S + 1, -1, dtype=np.int32)  # last slot maps -1 -> -1
    remap[:S][keep] = np.arange(int(keep.sum()), dtype=np.int32)
    captions = [c for c, k in zip(labels.captions, keep) if k] if labels.captions is not None else None
    return PseudoLabels(segments=remap[seg], embeddings=labels.embeddings[keep], captions=captions,
                        provenance=dict(labels.provenance))


def scaled_min_area(height: int, width: int, area_at_base: int = 1024, base_resolution: int = 512) -> int:
    """The paper's 1024 px at 512 x 512, scaled by pixel count to ``height x width``."""
    if area_at_base < 0 or base_resolution <= 0:
        raise ValueError(f"area_at_base must be >= 0 and base_resolution > 0, got {area_at_base}, {base_resolution}")
    return int(round(area_at_base * height * width / float(base_resolution * base_resolution)))
