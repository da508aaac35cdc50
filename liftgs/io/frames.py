"""Shared loading of posed RGB-D frame sequences (ScanNet exports, generic RGB-D folders).

Both readers list per-frame files, then call :func:`load_posed_frames`, which validates
poses (a NaN / infinite pose -> warning + skip, as ScanNet's tracking failures require),
checks that every depth and every colour image has the size of the first, resizes colour
(bilinear) and depth (nearest, never blending across edges) to a working size with ``K``
scaled, and builds :class:`~liftgs.types.Frame` objects with world->camera ``viewmat``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from liftgs.geometry import fuse_frames, invert_pose
from liftgs.io.errors import DataError, data_error
from liftgs.io.images import read_depth, read_rgb
from liftgs.types import Camera, Frame

__all__ = ["FrameFiles", "read_matrix_txt", "read_pose_txt", "load_posed_frames", "fuse_points",
           "resize_depth_nearest"]


@dataclass
class FrameFiles:
    """The files of one frame; ``pose`` holds a 4x4 camera->world text matrix."""

    name: str
    color: Path
    depth: Path
    pose: Path


def read_matrix_txt(path: str | Path, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet pose / intrinsic files). May hold NaN/inf."""
    path = Path(path)
    if not path.is_file():
        raise DataError("matrix file is missing", path)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise data_error(path, "not a numeric matrix", exc) from exc
    n = shape[0] * shape[1]
    if values.size != n:
        raise DataError(f"expected {shape[0]}x{shape[1]} = {n} numbers, found {values.size} "
                        "(truncated file?)", path)
    return values.reshape(shape)


def read_pose_txt(path: str | Path, world_to_camera: bool = False) -> np.ndarray | None:
    """World->camera ``viewmat`` from a camera->world pose file (or a world->camera one when
    ``world_to_camera``); None with a warning when the pose holds NaN / inf (invalid frame)."""
    T = read_matrix_txt(path)
    if not np.isfinite(T).all():
        warnings.warn(f"{path}: pose holds NaN/inf (tracking lost); skipping this frame", stacklevel=2)
        return None
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"last row of a rigid pose must be [0 0 0 1], got {T[3].tolist()}", path)
    return T.copy() if world_to_camera else invert_pose(T)


def resize_depth_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of float depth [H, W] (no blending of foreground/background)."""
    if depth.shape == (height, width):
        return depth
    img = Image.fromarray(depth.astype(np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.NEAREST), dtype=np.float32)


def _check_size(path: Path, got: tuple[int, int], want: tuple[int, int], what: str) -> None:
    if got != want:
        raise DataError(f"{what} image is {got[0]}x{got[1]} but the sequence's {what} images are "
                        f"{want[0]}x{want[1]} (mismatched image sizes)", path)


def load_posed_frames(
    files: list[FrameFiles],
    K_depth: np.ndarray,  # [3, 3] intrinsics of the depth image
    depth_size: tuple[int, int] | None = None,  # (W, H) expected; default: the first depth image
    color_size: tuple[int, int] | None = None,  # (W, H) expected; default: the first colour image
    work_size: tuple[int, int] | None = None,  # (W, H) of the output frames; default depth size
    depth_scale: float = 1000.0,
    invalid_depth: int | None = None,
    world_to_camera_poses: bool = False,
    progress: bool = True,
) -> list[Frame]:
    """Frames with valid poses, colour and depth on one pixel grid (see module docstring)."""
    from tqdm import tqdm

    frames: list[Frame] = []
    for ff in tqdm(files, desc="frames", unit="frame", disable=not progress, leave=False):
        viewmat = read_pose_txt(ff.pose, world_to_camera=world_to_camera_poses)
        if viewmat is None:
            continue
        depth = read_depth(ff.depth, scale=depth_scale, invalid_value=invalid_depth)
        dsize = (depth.shape[1], depth.shape[0])
        depth_size = depth_size or dsize
        _check_size(ff.depth, dsize, tuple(depth_size), "depth")
        rgb = read_rgb(ff.color)
        csize = (rgb.shape[1], rgb.shape[0])
        color_size = color_size or csize
        _check_size(ff.color, csize, tuple(color_size), "colour")
        W, H = work_size or depth_size
        camera = Camera(K=K_depth, viewmat=viewmat, width=depth_size[0], height=depth_size[1]).scaled(W, H)
        if csize != (W, H):
            rgb = np.asarray(Image.fromarray(rgb).resize((W, H), Image.BILINEAR), dtype=np.uint8)
        frames.append(Frame(camera=camera, rgb=rgb, depth=resize_depth_nearest(depth, W, H), name=ff.name))
    return frames


def fuse_points(frames: list[Frame], where: Path, voxel_size: float, pixel_stride: int,
                max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Sensor point cloud of ``frames`` (:func:`liftgs.geometry.fuse_frames`, ids ignored)."""
    if not frames:
        raise DataError("no usable frame (every pose invalid or no frames selected)", where)
    try:
        points, colors, _ = fuse_frames(frames, voxel_size=voxel_size, stride=pixel_stride, max_depth=max_depth)
    except ValueError as exc:
        raise data_error(where, "cannot build a point cloud: empty point cloud", exc) from exc
    return points, colors
