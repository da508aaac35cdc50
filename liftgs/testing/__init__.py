"""Fabricated data and models for tests and smoke runs — nothing here is used by the library.

* :mod:`liftgs.testing.datasets`: miniature ScanNet / RGB-D / ScanRefer / ReferIt3D folders in
  the real layouts, with closed-form geometry, to check a reader or converter;
* :mod:`liftgs.testing.rooms`: tiny fabricated rooms with pseudo-labels and a matching stand-in
  text encoder, to run the training recipes end to end in seconds;
* :mod:`liftgs.testing.scans`: a fabricated textured room seen by a ring of RGB-D cameras, and a
  copy with real-capture faults (missing depth, exposure changes, bad poses), for reconstruction;
* tiny random SAM / CLIP / LLaVA checkpoints (:mod:`liftgs.teachers.tiny`, re-exported here)
  to exercise the 2D-teacher code path offline.

Outputs of models trained on any of this are meaningless; shapes, formats and plumbing are not.
"""

from liftgs.teachers.tiny import write_tiny_captioner, write_tiny_clip, write_tiny_sam
from liftgs.testing.datasets import (PlaneRig, write_label_map, write_nr3d, write_rgbd_folder, write_scannet_scan,
                                     write_scanrefer, write_sr3d)
from liftgs.testing.rooms import (CATEGORIES, EMBEDDING_DIM, RoomTextEncoder, fabricate_scene, write_quick_rooms,
                                  write_rooms)
from liftgs.testing.scans import degrade_scan, fabricate_scan

__all__ = [
    "PlaneRig", "write_scannet_scan", "write_label_map", "write_rgbd_folder", "write_scanrefer", "write_sr3d",
    "write_nr3d",
    "CATEGORIES", "EMBEDDING_DIM", "RoomTextEncoder", "fabricate_scene", "write_rooms", "write_quick_rooms",
    "write_tiny_sam", "write_tiny_clip", "write_tiny_captioner", "fabricate_scan", "degrade_scan",
]
