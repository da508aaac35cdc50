"""liftgs.io: the scene directory format, point-cloud files, and readers for real layouts
(ScanNet v2 SensReader exports, generic RGB-D folders, ScanRefer / Sr3d / Nr3d annotations).

See docs/scene_format.md for the on-disk format and its conventions.
"""

from liftgs.io.errors import DataError
from liftgs.io.ply import load_point_cloud, read_point_cloud, write_point_cloud
from liftgs.io.splat_ply import SplatCloud, read_splat_ply, write_splat_ply
from liftgs.io.scene_dir import (list_scenes, read_cameras, read_frame, read_scene, read_splits,
                                 write_scene, write_splits)

__all__ = [
    "DataError",
    "load_point_cloud",
    "read_point_cloud",
    "write_point_cloud",
    "SplatCloud",
    "read_splat_ply",
    "write_splat_ply",
    "write_scene",
    "read_scene",
    "read_frame",
    "read_cameras",
    "list_scenes",
    "write_splits",
    "read_splits",
]
