"""Generic RGB-D folders (7-Scenes, TUM-like or your own capture).

Two layouts are recognised (``layout="auto"`` picks the one present):

* ``folders``: ``color/`` (or ``rgb/``) + ``depth/`` + ``pose/`` (or ``poses/``) with matching
  file stems, e.g. ``color/000120.jpg``, ``depth/000120.png``, ``pose/000120.txt``;
* ``7scenes``: ``frame-000000.color.png``, ``frame-000000.depth.png``, ``frame-000000.pose.txt``
  side by side (Microsoft 7-Scenes sequences).

Poses are 4x4 text matrices, camera->world by default (OpenCV camera axes). Intrinsics are
those of the depth image: a text file holding a 3x3 or 4x4 matrix or the four numbers
``fx fy cx cy``, or ``fxfycxcy`` given directly (7-Scenes has no intrinsics file; its
depth camera is roughly 585 585 320 240). Depth is ``raw / depth_scale`` metres (1000 for
millimetre PNGs, 5000 for TUM); ``invalid_depth`` (e.g. 65535 in 7-Scenes) marks holes.
The world frame is kept as recorded (no z-up alignment is known for such captures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from liftgs.io.errors import DataError
from liftgs.io.frames import FrameFiles, fuse_points, load_posed_frames
from liftgs.types import Scene

__all__ = ["RGBDFolderConfig", "read_rgbd_folder", "read_intrinsics"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_INTRINSICS_NAMES = ("intrinsics.txt", "intrinsic.txt", "camera.txt", "intrinsic/intrinsic_depth.txt")


@dataclass
class RGBDFolderConfig:
    """How to read one RGB-D sequence folder."""

    root: Path
    scene_id: str | None = None  # default: the folder's name
    layout: Literal["auto", "folders", "7scenes"] = "auto"
    intrinsics: Path | None = None  # default: first of intrinsics.txt, intrinsic.txt, camera.txt in root
    fxfycxcy: tuple[float, float, float, float] | None = None  # instead of an intrinsics file
    depth_scale: float = 1000.0  # raw depth units per metre
    invalid_depth: int | None = None  # raw value meaning "no depth" (e.g. 65535); 0 always is
    poses_world_to_camera: bool = False  # pose files hold world->camera instead of camera->world
    frame_stride: int = 1
    image_size: tuple[int, int] | None = None  # (width, height) of output frames; default depth size
    voxel_size: float = 0.05
    pixel_stride: int = 2
    max_depth: float = 6.0
    progress: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.intrinsics = Path(self.intrinsics) if self.intrinsics is not None else None
        if self.layout not in ("auto", "folders", "7scenes"):
            raise ValueError(f"layout must be 'auto', 'folders' or '7scenes', got {self.layout!r}")
        if self.depth_scale <= 0:
            raise ValueError(f"depth_scale must be > 0 (raw units per metre, e.g. 1000), got {self.depth_scale}")
        if self.frame_stride < 1 or self.pixel_stride < 1:
            raise ValueError("frame_stride and pixel_stride must be >= 1")
        if self.voxel_size <= 0 or self.max_depth <= 0:
            raise ValueError("voxel_size and max_depth must be > 0 (metres)")
        if self.fxfycxcy is not None and len(self.fxfycxcy) != 4:
            raise ValueError("fxfycxcy takes four numbers: fx fy cx cy")


def read_intrinsics(path: Path) -> np.ndarray:
    """K [3, 3] from a text file with a 3x3 / 4x4 matrix or ``fx fy cx cy``."""
    if not path.is_file():
        raise DataError("intrinsics file is missing", path)
    try:
        v = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"intrinsics file is not numeric ({exc})", path) from exc
    if v.size == 4:
        return np.array([[v[0], 0, v[2]], [0, v[1], v[3]], [0, 0, 1.0]])
    if v.size in (9, 16):
        n = int(round(np.sqrt(v.size)))
        K = v.reshape(n, n)[:3, :3]
    else:
        raise DataError(f"intrinsics need 4 (fx fy cx cy), 9 (3x3) or 16 (4x4) numbers, found {v.size}", path)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError("intrinsics must be finite with positive focal lengths", path)
    return K


def _subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _natural_key(stem: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem))


def _list_folders(root: Path) -> list[FrameFiles]:
    color_dir, depth_dir = _subdir(root, ("color", "rgb")), _subdir(root, ("depth",))
    pose_dir = _subdir(root, ("pose", "poses"))
    if not (color_dir and depth_dir and pose_dir):
        raise DataError("expected color/ (or rgb/), depth/ and pose/ (or poses/) folders", root)
    files = []
    for color in sorted((p for p in color_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
                        key=lambda p: _natural_key(p.stem)):
        ff = FrameFiles(name=color.stem, color=color, depth=depth_dir / f"{color.stem}.png",
                        pose=pose_dir / f"{color.stem}.txt")
        for p in (ff.depth, ff.pose):
            if not p.is_file():
                raise DataError(f"frame {color.stem} has colour but this file is missing", p)
        files.append(ff)
    return files


def _list_7scenes(root: Path) -> list[FrameFiles]:
    files = []
    for color in sorted(root.glob("frame-*.color.png"), key=lambda p: _natural_key(p.name)):
        stem = color.name[: -len(".color.png")]
        ff = FrameFiles(name=stem, color=color, depth=root / f"{stem}.depth.png", pose=root / f"{stem}.pose.txt")
        for p in (ff.depth, ff.pose):
            if not p.is_file():
                raise DataError(f"frame {stem} has colour but this file is missing", p)
        files.append(ff)
    return files


def _intrinsics(config: RGBDFolderConfig) -> np.ndarray:
    if config.fxfycxcy is not None:
        fx, fy, cx, cy = config.fxfycxcy
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    if config.intrinsics is not None:
        return read_intrinsics(config.intrinsics)
    for name in _INTRINSICS_NAMES:
        if (config.root / name).is_file():
            return read_intrinsics(config.root / name)
    raise DataError(f"no intrinsics: put one of {list(_INTRINSICS_NAMES)} in the folder or pass "
                    "intrinsics=PATH / fxfycxcy=(fx, fy, cx, cy)", config.root)


def read_rgbd_folder(config: RGBDFolderConfig) -> Scene:
    """Read a posed RGB-D sequence into a :class:`Scene` with a fused sensor point cloud."""
    root = config.root
    if not root.is_dir():
        raise DataError("RGB-D folder is missing", root)
    layout = config.layout
    if layout == "auto":
        layout = "7scenes" if any(root.glob("frame-*.color.png")) else "folders"
    files = (_list_7scenes(root) if layout == "7scenes" else _list_folders(root))[:: config.frame_stride]
    if not files:
        raise DataError(f"no frames found ({layout} layout)", root)
    K = _intrinsics(config)
    frames = load_posed_frames(files, K, work_size=config.image_size, depth_scale=config.depth_scale,
                               invalid_depth=config.invalid_depth,
                               world_to_camera_poses=config.poses_world_to_camera, progress=config.progress)
    points, colors = fuse_points(frames, root, config.voxel_size, config.pixel_stride, config.max_depth)
    meta = {"source": "rgbd", "layout": layout, "frame_stride": config.frame_stride,
            "depth_scale": config.depth_scale, "voxel_size": config.voxel_size}
    return Scene(scene_id=config.scene_id or root.name, points=points, colors=colors, frames=frames, meta=meta)
