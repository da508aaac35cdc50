"""Shared loading of posed RGB-D frame sequences (ScanNet exports, generic RGB-D folders).

Both readers list per-frame files, then call :func:`load_posed_frames`, which validates
every input at the door (before anything is written): intrinsics (:func:`check_intrinsics`:
positive, finite focal lengths), poses (:func:`check_pose`: finite and rigid; a pose whose
16 entries are all ``-inf`` is ScanNet's "tracking lost" marker and the frame is skipped
with a warning), depth (16-bit PNGs only), then checks that every depth and every colour
image has the size of the first, resizes colour (bilinear) and depth (nearest, never
blending across edges) to a working size with ``K`` scaled, and builds
:class:`~liftgs.types.Frame` objects with world->camera ``viewmat``. :func:`fuse_points`
refuses a cloud with non-finite or absurdly distant points.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from liftgs.geometry import fuse_frames, invert_pose
from liftgs.io.errors import DataError, DataWarning, data_error
from liftgs.io.images import read_depth, read_rgb
from liftgs.types import Camera, Frame

__all__ = ["FrameFiles", "read_matrix_txt", "read_pose_txt", "check_pose", "check_intrinsics",
           "load_posed_frames", "fuse_points", "resize_depth_nearest", "MAX_COORDINATE"]

MAX_COORDINATE = 1000.0
"""metres; a pose translation or fused point farther from the origin is refused (an indoor
capture spans tens of metres: this catches poses in millimetres and corrupt matrices)"""
RIGID_TOLERANCE = 1e-3  # max |R^T R - I| and |det R - 1| of a pose read from text


@dataclass
class FrameFiles:
    """The files of one frame; ``pose`` holds a 4x4 camera->world text matrix, unless the
    pose was read from a trajectory file (TUM ``groundtruth.txt``): then ``pose_matrix`` is
    that camera->world matrix, ``pose`` the trajectory file and ``pose_where`` its line."""

    name: str
    color: Path
    depth: Path
    pose: Path
    pose_matrix: np.ndarray | None = None  # [4, 4] camera->world, when not read from ``pose``
    pose_where: str = ""  # e.g. "line 12", to name the entry of a trajectory file


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


def check_intrinsics(K: np.ndarray, path: str | Path, prefix: str = "") -> np.ndarray:
    """``K`` [3, 3] if it is a pinhole matrix liftgs can use, else a :class:`DataError` naming
    ``path`` and the field: fx, fy positive and finite (a zero focal length makes every point
    infinite, a negative one mirrors the scene), cx, cy finite, last row ``0 0 1``."""
    K = np.asarray(K, dtype=np.float64)
    for name, value in (("fx", K[0, 0]), ("fy", K[1, 1])):
        if not (np.isfinite(value) and value > 0):
            raise DataError(f"{prefix}{name} = {value:g}: focal lengths must be positive and finite (pixels)", path)
    for name, value in (("cx", K[0, 2]), ("cy", K[1, 2])):
        if not np.isfinite(value):
            raise DataError(f"{prefix}{name} = {value:g}: the principal point must be finite", path)
    if not np.isfinite(K).all() or not np.allclose(K[2], [0, 0, 1]):
        raise DataError(f"{prefix}last row of K must be [0 0 1], got {K[2].tolist()}", path)
    return K


def check_pose(T: np.ndarray, path: str | Path, where: str = "") -> np.ndarray | None:
    """The camera->world pose ``T`` [4, 4] if it is finite and rigid; None (with a warning)
    for ScanNet's "tracking lost" marker (every entry ``-inf``); else a :class:`DataError`
    naming ``path`` (and ``where``, e.g. a line) and the field."""
    at = f"{where}: " if where else ""
    if np.all(np.isneginf(T)):
        warnings.warn(f"{path}: {at}pose holds NaN/inf (tracking lost); skipping this frame", DataWarning, stacklevel=3)
        return None
    if not np.isfinite(T).all():
        r, c = np.argwhere(~np.isfinite(T))[0]
        raise DataError(f"{at}pose entry [{r}, {c}] is {T[r, c]}: poses must be finite", path)
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{at}last row of a rigid pose must be [0 0 0 1], got {T[3].tolist()}", path)
    R = T[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > RIGID_TOLERANCE:
        raise DataError(f"{at}pose rotation is not orthonormal (max |R^T R - I| = {err:.3g}; scaled or "
                        "sheared pose?)", path)
    det = float(np.linalg.det(R))
    if abs(det - 1.0) > RIGID_TOLERANCE:
        raise DataError(f"{at}pose rotation has determinant {det:.3g}, not +1 (a mirrored pose)", path)
    dist = float(np.linalg.norm(T[:3, 3]))
    if dist > MAX_COORDINATE:
        raise DataError(f"{at}pose translation is {dist:.4g} m from the origin, beyond {MAX_COORDINATE:g} m "
                        "(poses in millimetres?)", path)
    return T


def read_pose_txt(path: str | Path, world_to_camera: bool = False) -> np.ndarray | None:
    """World->camera ``viewmat`` from a camera->world pose file (or a world->camera one when
    ``world_to_camera``); None with a warning for a "tracking lost" pose (:func:`check_pose`)."""
    T = read_matrix_txt(path)
    if check_pose(T, path) is None:  # rigid iff its inverse is, and |t| is the same for both
        return None
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
        if ff.pose_matrix is not None:
            T = check_pose(ff.pose_matrix, ff.pose, ff.pose_where)
            viewmat = None if T is None else invert_pose(T)
        else:
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
    check_points(points, where)
    return points, colors


def check_points(points: np.ndarray, where: Path) -> None:
    """Refuse a cloud with non-finite points or points beyond :data:`MAX_COORDINATE`."""
    if not np.isfinite(points).all():
        raise DataError(f"points: {int((~np.isfinite(points)).any(axis=1).sum())} fused points are NaN/inf "
                        "(check the intrinsics and depth scale)", where)
    far = float(np.abs(points).max(initial=0.0))
    if far > MAX_COORDINATE:
        raise DataError(f"points: a fused point lies {far:.4g} m from the origin, beyond {MAX_COORDINATE:g} m "
                        "(check the poses' units and the depth scale)", where)
