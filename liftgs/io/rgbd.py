"""Posed RGB-D captures in the common public layouts (``liftgs convert rgbd``).

``layout="auto"`` recognises a folder by its files (first match wins):

* ``7scenes`` (Microsoft 7-Scenes, 3DMatch): ``frame-000000.color.png|jpg``, ``.depth.png``,
  ``.pose.txt`` side by side, in the folder or in its ``seq-XX/`` sub-folders (read as one
  scene: a scene's sequences share one world frame). Depth uint16 mm, 65535 = invalid.
  Intrinsics: ``camera-intrinsics.txt`` (in the folder or its parent), else 7-Scenes' own
  depth camera (585, 585, 320, 240) when the depth is 640x480;
* ``tum`` (TUM RGB-D): ``rgb.txt``, ``depth.txt``, ``groundtruth.txt``
  (``timestamp tx ty tz qx qy qz qw``) with ``rgb/`` and ``depth/`` PNGs; depth = raw / 5000.
  Depth and pose are associated to each colour frame by nearest timestamp within
  ``max_time_diff`` seconds (colour frames without both are skipped). Intrinsics: a file, else
  the published colour calibration of freiburg1/2/3 named by the folder (depth is registered
  to colour);
* ``scannet`` (ScanNet SensReader export): ``color/N.jpg``, ``depth/N.png``, ``pose/N.txt``,
  ``intrinsic/intrinsic_depth.txt`` (or ``intrinsic_color.txt``, scaled to the depth size);
  ``<folder>.txt`` with ``axisAlignment``, when present, levels the scene;
* ``folders``: ``color/`` (or ``rgb/``) + ``depth/`` + ``pose/`` (or ``poses/``) with matching
  file stems, e.g. ``color/000120.jpg``, ``depth/000120.png``, ``pose/000120.txt``.

Poses are 4x4 camera->world text matrices (OpenCV camera axes) unless
``poses_world_to_camera``. Intrinsics are those of the depth image: ``intrinsics`` or
``fxfycxcy`` given, else the first of :data:`INTRINSICS_NAMES` in the folder (3x3 / 4x4
matrix or ``fx fy cx cy``). Colour may be PNG or JPEG anywhere. The scene is levelled
(z up, :mod:`liftgs.io.alignment`) from ``axisAlignment``, a ``gravity.txt`` (world) or
per-frame gravity files (``frame-XXXXXX.gravity.txt`` / ``gravity/<stem>.txt``, camera
coordinates), else from the floor plane.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from liftgs.io.alignment import (Alignment, apply_to_frames, apply_to_points, floor_alignment,
                                 gravity_alignment)
from liftgs.io.errors import DataError, DataWarning, data_error
from liftgs.io.frames import FrameFiles, check_intrinsics, check_points, fuse_points, load_posed_frames
from liftgs.types import Scene

__all__ = ["RGBDFolderConfig", "read_rgbd_folder", "read_intrinsics", "detect_layout", "LAYOUTS",
           "INTRINSICS_NAMES"]

LAYOUTS = ("7scenes", "tum", "scannet", "folders")
INTRINSICS_NAMES = ("camera-intrinsics.txt", "intrinsics.txt", "intrinsic.txt", "camera.txt",
                    "intrinsic/intrinsic_depth.txt")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SEVEN_SCENES_DEPTH = (585.0, 585.0, 320.0, 240.0)  # fx fy cx cy at 640x480
TUM_COLOR = {"freiburg1": (517.3, 516.5, 318.6, 255.3), "freiburg2": (520.9, 521.0, 325.1, 249.7),
             "freiburg3": (535.4, 539.2, 320.1, 247.6)}


@dataclass
class RGBDFolderConfig:
    """How to read one RGB-D sequence folder."""

    root: Path
    scene_id: str | None = None  # default: the folder's name
    layout: Literal["auto", "7scenes", "tum", "scannet", "folders"] = "auto"
    intrinsics: Path | None = None  # default: the layout's intrinsics file (see module docstring)
    fxfycxcy: tuple[float, float, float, float] | None = None  # instead of an intrinsics file
    depth_scale: float | None = None  # raw depth units per metre; default: the layout's (TUM 5000, else 1000)
    invalid_depth: int | None = None  # raw value meaning "no depth"; default: 65535 for 7-Scenes; 0 always is
    poses_world_to_camera: bool = False  # pose files hold world->camera instead of camera->world
    frame_stride: int = 1
    image_size: tuple[int, int] | None = None  # (width, height) of output frames; default depth size
    voxel_size: float = 0.05
    pixel_stride: int = 2
    max_depth: float = 6.0
    align: Literal["auto", "none"] = "auto"  # "none": keep the world as recorded (already z-up)
    max_time_diff: float = 0.02  # seconds; TUM colour/depth/pose association tolerance
    progress: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.intrinsics = Path(self.intrinsics) if self.intrinsics is not None else None
        if self.layout not in ("auto", *LAYOUTS):
            raise ValueError(f"layout must be 'auto' or one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.depth_scale is not None and not (np.isfinite(self.depth_scale) and self.depth_scale > 0):
            raise ValueError(f"depth_scale must be > 0 (raw units per metre, e.g. 1000), got {self.depth_scale}")
        if self.frame_stride < 1 or self.pixel_stride < 1:
            raise ValueError("frame_stride and pixel_stride must be >= 1")
        if self.voxel_size <= 0 or self.max_depth <= 0 or self.max_time_diff <= 0:
            raise ValueError("voxel_size, max_depth and max_time_diff must be > 0")
        if self.align not in ("auto", "none"):
            raise ValueError(f"align must be 'auto' or 'none', got {self.align!r}")
        if self.fxfycxcy is not None:
            if len(self.fxfycxcy) != 4:
                raise ValueError("fxfycxcy takes four numbers: fx fy cx cy")
            check_intrinsics(_k(self.fxfycxcy), "--fxfycxcy")


@dataclass
class _Listing:
    """What a layout reader found: frames, intrinsics and the layout's defaults."""

    files: list[FrameFiles]
    K: np.ndarray | None = None  # [3, 3] depth intrinsics, None: look for a file
    K_source: str = ""
    depth_scale: float = 1000.0
    invalid_depth: int | None = None
    intrinsics_dirs: tuple[Path, ...] = ()  # where to look for an intrinsics file
    default_K: tuple[float, float, float, float] | None = None  # used when no file (at 640x480)
    default_name: str = ""  # what default_K is, for meta["intrinsics"]
    alignment: Alignment | None = None  # known from the data (ScanNet axisAlignment)
    frame_gravity: dict[str, Path] = field(default_factory=dict)


def _k(v) -> np.ndarray:
    fx, fy, cx, cy = (float(x) for x in v)
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def read_intrinsics(path: Path) -> np.ndarray:
    """K [3, 3] from a text file with a 3x3 / 4x4 matrix or ``fx fy cx cy``, validated."""
    if not path.is_file():
        raise DataError("intrinsics file is missing", path)
    try:
        v = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise data_error(path, "intrinsics file is not numeric", exc) from exc
    if v.size == 4:
        K = _k(v)
    elif v.size in (9, 16):
        n = int(round(np.sqrt(v.size)))
        K = v.reshape(n, n)[:3, :3]
    else:
        raise DataError(f"intrinsics need 4 (fx fy cx cy), 9 (3x3) or 16 (4x4) numbers, found {v.size}", path)
    return check_intrinsics(K, path)


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _require(ff: FrameFiles) -> FrameFiles:
    for p in (ff.depth, ff.pose):
        if not p.is_file():
            raise DataError(f"frame {ff.name} has colour but this file is missing", p)
    return ff


def _seven_scenes_frames(folder: Path) -> list[Path]:
    colors = [p for p in folder.glob("frame-*.color.*") if p.suffix.lower() in _IMAGE_SUFFIXES]
    return sorted(colors, key=lambda p: _natural_key(p.name))


def _seq_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.glob("seq-*") if d.is_dir() and _seven_scenes_frames(d)),
                  key=lambda d: _natural_key(d.name))


def detect_layout(root: Path) -> str:
    """The layout of ``root`` by its files (module docstring), or a one-line DataError."""
    if _seven_scenes_frames(root) or _seq_dirs(root):
        return "7scenes"
    if all((root / n).is_file() for n in ("rgb.txt", "depth.txt", "groundtruth.txt")):
        return "tum"
    has_frames = _subdir(root, ("color", "rgb")) and (root / "depth").is_dir() and _subdir(root, ("pose", "poses"))
    if has_frames and (root / "intrinsic").is_dir():
        return "scannet"
    if has_frames:
        return "folders"
    raise DataError("not a recognised RGB-D folder; looked for 7-Scenes (frame-*.color.png|jpg, here or in "
                    "seq-*/), TUM (rgb.txt + depth.txt + groundtruth.txt), ScanNet export (color/ depth/ pose/ "
                    "intrinsic/), folders (color/|rgb/ + depth/ + pose/|poses/); pass --layout to force one", root)


def _list_7scenes(root: Path, config: RGBDFolderConfig) -> _Listing:
    seqs = [(root, "")] if _seven_scenes_frames(root) else [(d, f"{d.name}_") for d in _seq_dirs(root)]
    files, gravity = [], {}
    for folder, prefix in seqs:
        for color in _seven_scenes_frames(folder):
            stem = color.name.split(".color.")[0]
            ff = _require(FrameFiles(name=prefix + stem, color=color, depth=folder / f"{stem}.depth.png",
                                     pose=folder / f"{stem}.pose.txt"))
            files.append(ff)
            if (folder / f"{stem}.gravity.txt").is_file():
                gravity[ff.name] = folder / f"{stem}.gravity.txt"
    return _Listing(files, depth_scale=1000.0, invalid_depth=65535, intrinsics_dirs=(root, root.parent),
                    default_K=SEVEN_SCENES_DEPTH, default_name="7-Scenes depth camera", frame_gravity=gravity)


def _list_folders(root: Path, config: RGBDFolderConfig) -> _Listing:
    color_dir, depth_dir = _subdir(root, ("color", "rgb")), _subdir(root, ("depth",))
    pose_dir = _subdir(root, ("pose", "poses"))
    if not (color_dir and depth_dir and pose_dir):
        raise DataError("expected color/ (or rgb/), depth/ and pose/ (or poses/) folders", root)
    files, gravity = [], {}
    for color in sorted((p for p in color_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
                        key=lambda p: _natural_key(p.stem)):
        files.append(_require(FrameFiles(name=color.stem, color=color, depth=depth_dir / f"{color.stem}.png",
                                         pose=pose_dir / f"{color.stem}.txt")))
        if (root / "gravity" / f"{color.stem}.txt").is_file():
            gravity[color.stem] = root / "gravity" / f"{color.stem}.txt"
    return _Listing(files, intrinsics_dirs=(root,), frame_gravity=gravity)


def _list_scannet(root: Path, config: RGBDFolderConfig) -> _Listing:
    from liftgs.io.scannet import parse_scene_meta

    listing = _list_folders(root, config)
    listing.files = [ff for ff in listing.files if ff.name.isdigit()]
    listing.files.sort(key=lambda ff: int(ff.name))
    if (root / "intrinsic" / "intrinsic_depth.txt").is_file():
        listing.K, listing.K_source = read_intrinsics(root / "intrinsic" / "intrinsic_depth.txt"), "intrinsic_depth.txt"
    elif (root / "intrinsic" / "intrinsic_color.txt").is_file() and listing.files:
        K = read_intrinsics(root / "intrinsic" / "intrinsic_color.txt")
        (Wc, Hc), (Wd, Hd) = _image_size(listing.files[0].color), _image_size(listing.files[0].depth)
        K[0] *= Wd / Wc
        K[1] *= Hd / Hc
        K[2] = [0.0, 0.0, 1.0]
        listing.K, listing.K_source = K, "intrinsic_color.txt scaled to the depth size"
    meta = root / f"{root.name}.txt"
    if meta.is_file():
        A, _ = parse_scene_meta(meta)
        if A is not None:
            listing.alignment = Alignment(A, "axis-align", {"file": meta.name})
    return listing


def _read_stamped(path: Path, columns: int) -> list[tuple[float, list[str], int]]:
    """Lines ``timestamp v1 ... v{columns}`` of a TUM text file (``#`` comments skipped)."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != columns + 1:
            raise DataError(f"line {n}: expected timestamp + {columns} values, found {len(parts)} fields", path)
        try:
            rows.append((float(parts[0]), parts[1:], n))
        except ValueError as exc:
            raise data_error(path, f"line {n}: timestamp is not a number", exc) from exc
    if not rows:
        raise DataError("no entries", path)
    return rows


def _nearest(times: np.ndarray, t: float) -> int:
    i = int(np.searchsorted(times, t))
    cands = [j for j in (i - 1, i) if 0 <= j < len(times)]
    return min(cands, key=lambda j: abs(times[j] - t))


def _tum_pose(values: list[str], path: Path, line: int) -> np.ndarray:
    try:
        tx, ty, tz, qx, qy, qz, qw = (float(v) for v in values)
    except ValueError as exc:
        raise data_error(path, f"line {line}: pose values are not numbers", exc) from exc
    q = np.array([qw, qx, qy, qz])
    norm = float(np.linalg.norm(q))
    if not (np.isfinite(q).all() and abs(norm - 1.0) < 1e-2):
        raise DataError(f"line {line}: quaternion qx qy qz qw has norm {norm:.4g}, expected 1", path)
    w, x, y, z = q / norm
    T = np.eye(4)
    T[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    T[:3, 3] = [tx, ty, tz]
    return T


def _list_tum(root: Path, config: RGBDFolderConfig) -> _Listing:
    rgb = _read_stamped(root / "rgb.txt", 1)
    depth = _read_stamped(root / "depth.txt", 1)
    gt_path = root / "groundtruth.txt"
    gt = _read_stamped(gt_path, 7)
    d_times, g_times = np.array([r[0] for r in depth]), np.array([r[0] for r in gt])
    d_order, g_order = np.argsort(d_times, kind="stable"), np.argsort(g_times, kind="stable")
    d_times, g_times = d_times[d_order], g_times[g_order]
    files, skipped = [], 0
    for t, (rel,), _ in rgb:
        di, gi = _nearest(d_times, t), _nearest(g_times, t)
        if abs(d_times[di] - t) > config.max_time_diff or abs(g_times[gi] - t) > config.max_time_diff:
            skipped += 1
            continue
        _, (drel,), _ = depth[d_order[di]]
        _, values, line = gt[g_order[gi]]
        ff = FrameFiles(name=Path(rel).stem, color=root / rel, depth=root / drel, pose=gt_path,
                        pose_matrix=_tum_pose(values, gt_path, line), pose_where=f"line {line}")
        for p in (ff.color, ff.depth):
            if not p.is_file():
                raise DataError(f"listed in {'rgb' if p == ff.color else 'depth'}.txt but missing", p)
        files.append(ff)
    if skipped:
        warnings.warn(f"{root}: {skipped} of {len(rgb)} colour frames have no depth or pose within "
                      f"{config.max_time_diff} s; skipped", DataWarning, stacklevel=3)
    match = re.search(r"freiburg([123])", root.resolve().name)
    name = f"freiburg{match.group(1)}" if match else ""
    return _Listing(files, depth_scale=5000.0, intrinsics_dirs=(root,), default_K=TUM_COLOR.get(name),
                    default_name=f"TUM {name} calibration")


_LISTERS = {"7scenes": _list_7scenes, "tum": _list_tum, "scannet": _list_scannet, "folders": _list_folders}


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as exc:  # PIL raises several types
        raise data_error(path, "cannot decode image (truncated or not an image?)", exc) from exc


def _intrinsics(config: RGBDFolderConfig, listing: _Listing, layout: str) -> tuple[np.ndarray, str]:
    if config.fxfycxcy is not None:
        return _k(config.fxfycxcy), "fxfycxcy"
    if config.intrinsics is not None:
        return read_intrinsics(config.intrinsics), str(config.intrinsics.name)
    if listing.K is not None:
        return listing.K, listing.K_source
    for folder in listing.intrinsics_dirs:
        for name in INTRINSICS_NAMES:
            if (folder / name).is_file():
                return read_intrinsics(folder / name), name
    if listing.default_K is not None and listing.files:
        if layout == "tum" or _image_size(listing.files[0].depth) == (640, 480):
            return _k(listing.default_K), f"{listing.default_name} {listing.default_K}"
    raise DataError(f"no intrinsics: put one of {list(INTRINSICS_NAMES)} in the folder or pass "
                    "--intrinsics PATH / --fxfycxcy FX FY CX CY", config.root)


def _align(config: RGBDFolderConfig, listing: _Listing, frames) -> Alignment | None:
    """The alignment known before fusion (None: estimate it from the fused floor)."""
    if config.align == "none":
        return Alignment.identity(reason="align='none'")
    if listing.alignment is not None:
        return listing.alignment
    world = config.root / "gravity.txt"
    return gravity_alignment(world if world.is_file() else None, listing.frame_gravity, frames)


def read_rgbd_folder(config: RGBDFolderConfig) -> Scene:
    """Read a posed RGB-D sequence into a z-up :class:`Scene` with a fused sensor point cloud.

    Every input is validated here, before anything is written (see :mod:`liftgs.io.frames`).
    """
    root = config.root
    if not root.is_dir():
        raise DataError("RGB-D folder is missing", root)
    layout = detect_layout(root) if config.layout == "auto" else config.layout
    listing = _LISTERS[layout](root, config)
    files = listing.files[:: config.frame_stride]
    if not files:
        raise DataError(f"no frames found ({layout} layout)", root)
    K, K_source = _intrinsics(config, listing, layout)
    depth_scale = config.depth_scale or listing.depth_scale
    invalid = config.invalid_depth if config.invalid_depth is not None else listing.invalid_depth
    frames = load_posed_frames(files, K, work_size=config.image_size, depth_scale=depth_scale,
                               invalid_depth=invalid, world_to_camera_poses=config.poses_world_to_camera,
                               progress=config.progress)
    if not frames:
        raise DataError("no usable frame (every pose invalid or no frames selected)", root)
    alignment = _align(config, listing, frames)
    if alignment is not None:  # known: move the cameras, then fuse in the z-up world
        apply_to_frames(frames, alignment)
        points, colors = fuse_points(frames, root, config.voxel_size, config.pixel_stride, config.max_depth)
    else:  # fuse as recorded, find the floor, then move points and cameras together
        points, colors = fuse_points(frames, root, config.voxel_size, config.pixel_stride, config.max_depth)
        alignment = floor_alignment(points, frames, root)
        points = apply_to_points(points, alignment)
        apply_to_frames(frames, alignment)
        check_points(points, root)
    meta = {"source": "rgbd", "layout": layout, "frame_stride": config.frame_stride, "depth_scale": depth_scale,
            "voxel_size": config.voxel_size, "intrinsics": K_source, "alignment": alignment.to_meta()}
    scene_id = config.scene_id or root.name or root.resolve().name
    return Scene(scene_id=scene_id, points=points, colors=colors, frames=frames,
                 meta=meta)
