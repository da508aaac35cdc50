"""ScanNet v2 scans as exported by the official SensReader (``reader.py --export_*``).

Expected files for scan ``<scene>`` (frames may live in a separate ``frames_dir``)::

    <scan_dir>/<scene>.txt                          axisAlignment = 16 numbers (row-major), ...
    <scan_dir>/<scene>_vh_clean_2.ply               mesh (vertices x y z red green blue alpha)
    <scan_dir>/<scene>.aggregation.json             segGroups: objectId, label, segments
    <scan_dir>/<scene>_vh_clean_2.0.010000.segs.json  segIndices: one segment id per vertex
    <frames_dir>/color/N.jpg  depth/N.png  pose/N.txt  intrinsic/intrinsic_depth.txt

Everything is moved into the axis-aligned frame (``axisAlignment`` applied to points and
poses: z up, the convention of ScanRefer/ReferIt3D boxes). A scan without ``axisAlignment``
(the test split) is levelled by its mesh's floor plane instead (:mod:`liftgs.io.alignment`);
``meta["alignment"]`` records the transform and its source. By default the point cloud is the
**sensor** point cloud, fused from the depth frames and voxelised at 5 cm exactly as the
paper builds its inputs (appendix A.1); ground-truth instance ids are transferred from the
annotated mesh vertices by nearest neighbour. ``point_source="mesh"`` uses the mesh vertices.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from liftgs.io.alignment import Alignment, floor_alignment
from liftgs.io.errors import DataError, data_error
from liftgs.io.frames import FrameFiles, check_intrinsics, fuse_points, load_posed_frames, read_matrix_txt
from liftgs.io.ply import read_point_cloud
from liftgs.types import ObjectInfo, Scene

__all__ = ["ScanNetConfig", "read_scannet_scene", "read_axis_alignment", "parse_scene_meta", "read_label_map",
           "read_scannet_instances", "transfer_instance_ids"]


@dataclass
class ScanNetConfig:
    """How to read one ScanNet scan."""

    scan_dir: Path  # folder with <scene>.txt, _vh_clean_2.ply, .aggregation.json, segs
    frames_dir: Path | None = None  # SensReader export (color/ depth/ pose/ intrinsic/); default scan_dir
    scene_id: str | None = None  # default: the scan folder's name
    frame_stride: int = 10  # keep every n-th frame (ScanNet records 30 fps)
    image_size: tuple[int, int] | None = None  # (width, height) of output frames; default depth size
    point_source: Literal["sensor", "mesh"] = "sensor"
    voxel_size: float = 0.05  # sensor point cloud voxel (paper: 5 cm)
    pixel_stride: int = 2  # unproject every n-th depth pixel when fusing
    max_depth: float = 6.0  # metres; farther depth is too noisy to fuse
    label_map: Path | None = None  # scannetv2-labels.combined.tsv -> attributes label_id / nyu40
    max_label_distance: float = 0.1  # metres; farther sensor points get instance -1
    progress: bool = True

    def __post_init__(self) -> None:
        self.scan_dir = Path(self.scan_dir)
        self.frames_dir = Path(self.frames_dir) if self.frames_dir is not None else None
        self.label_map = Path(self.label_map) if self.label_map is not None else None
        if self.frame_stride < 1 or self.pixel_stride < 1:
            raise ValueError("frame_stride and pixel_stride must be >= 1 (1 = every frame / pixel)")
        if self.voxel_size <= 0 or self.max_depth <= 0 or self.max_label_distance <= 0:
            raise ValueError("voxel_size, max_depth and max_label_distance must be > 0 (metres)")
        if self.point_source not in ("sensor", "mesh"):
            raise ValueError(f"point_source must be 'sensor' or 'mesh', got {self.point_source!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) <= 0):
            raise ValueError(f"image_size must be (width, height) > 0, got {self.image_size}")


def parse_scene_meta(meta_path: Path) -> tuple[np.ndarray | None, dict[str, str]]:
    """``axisAlignment`` [4, 4] of ``<scene>.txt`` (None if absent) and all its keys."""
    if not meta_path.is_file():
        raise DataError("ScanNet scene meta file is missing", meta_path)
    info = {}
    for line in meta_path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            info[key.strip()] = value.strip()
    if "axisAlignment" not in info:
        return None, info
    try:
        A = np.array(info["axisAlignment"].split(), dtype=np.float64).reshape(4, 4)
    except ValueError as exc:
        raise data_error(meta_path, "axisAlignment must hold 16 numbers", exc) from exc
    if not np.isfinite(A).all():
        raise DataError("axisAlignment holds NaN/inf", meta_path)
    R = A[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or abs(np.linalg.det(R) - 1) > 1e-3 or \
            not np.allclose(A[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError("axisAlignment is not a rigid transform (orthonormal rotation, det +1, last row "
                        "0 0 0 1)", meta_path)
    return A, info


def read_axis_alignment(meta_path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """``axisAlignment`` [4, 4] of ``<scene>.txt`` (identity + warning if absent) and all keys."""
    A, info = parse_scene_meta(meta_path)
    if A is None:
        warnings.warn(f"{meta_path}: no axisAlignment (test scan?); using identity", stacklevel=2)
        return np.eye(4), info
    return A, info


def read_label_map(path: Path) -> dict[str, dict[str, object]]:
    """``scannetv2-labels.combined.tsv``: raw_category -> {label_id, nyu40_id, nyu40_class}."""
    if not path.is_file():
        raise DataError("label map file is missing", path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    need = {"id", "raw_category", "nyu40id"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"label map needs tab-separated columns {sorted(need)}", path)
    out = {}
    for i, row in enumerate(rows):
        try:
            out[row["raw_category"]] = {"label_id": int(row["id"]), "nyu40_id": int(row["nyu40id"]),
                                        "nyu40_class": row.get("nyu40class", "")}
        except (TypeError, ValueError) as exc:
            raise data_error(path, f"bad row {i + 2}", exc) from exc
    return out


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError("annotation file is missing", path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(path, "cannot parse JSON (truncated or corrupt?)", exc) from exc


def read_scannet_instances(agg_path: Path, segs_path: Path, num_vertices: int,
                           label_map: dict[str, dict[str, object]] | None = None,
                           label_map_path: Path | None = None) -> tuple[np.ndarray, dict[int, ObjectInfo]]:
    """Per-vertex instance ids [V] int32 (-1 = none) and objects {objectId: ObjectInfo(raw label)}."""
    segs = _read_json(segs_path).get("segIndices")
    if not isinstance(segs, list) or len(segs) != num_vertices:
        n = len(segs) if isinstance(segs, list) else "no"
        raise DataError(f"segIndices has {n} entries but the mesh has {num_vertices} vertices", segs_path)
    seg_ids = np.asarray(segs, dtype=np.int64)
    groups = _read_json(agg_path).get("segGroups")
    if not isinstance(groups, list):
        raise DataError("no 'segGroups' list", agg_path)
    ids = np.full(num_vertices, -1, dtype=np.int32)
    objects: dict[int, ObjectInfo] = {}
    for g in groups:
        try:
            oid, label, members = int(g.get("objectId", g.get("id"))), str(g["label"]), g["segments"]
        except (KeyError, TypeError, ValueError) as exc:
            raise data_error(agg_path, "bad segGroups entry", exc) from exc
        attrs: dict[str, object] = {"raw_category": label}
        if label_map is not None:
            if label not in label_map:
                raise DataError(f"object {oid} has category {label!r}, unknown to the label map "
                                f"{label_map_path}", agg_path)
            attrs.update(label_map[label])
        objects[oid] = ObjectInfo(category=label, attributes=attrs)
        ids[np.isin(seg_ids, np.asarray(members, dtype=np.int64))] = oid
    return ids, objects


def transfer_instance_ids(points: np.ndarray, source_points: np.ndarray, source_ids: np.ndarray,
                          max_distance: float) -> np.ndarray:
    """Instance id of each point's nearest source point; -1 beyond ``max_distance`` (metres)."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(source_points).query(points, k=1)
    ids = source_ids[idx].astype(np.int32)
    ids[dist > max_distance] = -1
    return ids


def _frame_files(frames_dir: Path, stride: int) -> list[FrameFiles]:
    color_dir = frames_dir / "color"
    if not color_dir.is_dir():
        raise DataError("no color/ folder: pass the SensReader export folder as frames_dir", frames_dir)
    numbered = sorted((int(p.stem), p) for p in color_dir.iterdir() if re.fullmatch(r"\d+", p.stem))
    if not numbered:
        raise DataError("no numbered colour frames (N.jpg)", color_dir)
    files = []
    for n, color in numbered[::stride]:
        ff = FrameFiles(name=str(n), color=color, depth=frames_dir / "depth" / f"{n}.png",
                        pose=frames_dir / "pose" / f"{n}.txt")
        for p in (ff.depth, ff.pose):
            if not p.is_file():
                raise DataError(f"frame {n} has colour but this file is missing", p)
        files.append(ff)
    return files


def read_scannet_scene(config: ScanNetConfig) -> Scene:
    """Read one ScanNet scan into a :class:`Scene` (see the module docstring)."""
    scan_dir = config.scan_dir
    scene_id = config.scene_id or scan_dir.name
    frames_dir = config.frames_dir or scan_dir
    A, info = parse_scene_meta(scan_dir / f"{scene_id}.txt")
    mesh = read_point_cloud(scan_dir / f"{scene_id}_vh_clean_2.ply")
    files = _frame_files(frames_dir, config.frame_stride)
    K_path = frames_dir / "intrinsic" / "intrinsic_depth.txt"
    K_depth = check_intrinsics(read_matrix_txt(K_path)[:3, :3], K_path)
    depth_size = _size(info, "depth")
    frames = load_posed_frames(files, K_depth, depth_size=depth_size, color_size=_size(info, "color"),
                               work_size=config.image_size, progress=config.progress)
    if A is not None:
        alignment = Alignment(A, "axis-align", {"file": f"{scene_id}.txt"})
    else:  # test scans: level by the mesh's floor (cameras as recorded give the up hint)
        alignment = floor_alignment(mesh.points, frames, scan_dir)
        A = alignment.matrix
    mesh_points = (np.einsum("nj,ij->ni", mesh.points.astype(np.float64), A[:3, :3]) + A[:3, 3]).astype(np.float32)
    agg = scan_dir / f"{scene_id}.aggregation.json"
    segs = scan_dir / f"{scene_id}_vh_clean_2.0.010000.segs.json"
    vertex_ids, objects = None, {}
    if agg.exists() or segs.exists():
        lm = read_label_map(config.label_map) if config.label_map is not None else None
        vertex_ids, objects = read_scannet_instances(agg, segs, len(mesh_points), lm, config.label_map)
    else:
        warnings.warn(f"{scan_dir}: no instance annotation (test scan?); instance ids left empty", stacklevel=2)

    for f in frames:  # raw scan frame -> axis-aligned frame: c2w' = A c2w  =>  viewmat' = viewmat A^-1
        f.camera.viewmat = f.camera.viewmat @ np.linalg.inv(A)

    if config.point_source == "mesh":
        points, colors, ids = mesh_points, mesh.colors, vertex_ids
    else:
        points, colors = fuse_points(frames, frames_dir, config.voxel_size, config.pixel_stride, config.max_depth)
        ids = (transfer_instance_ids(points, mesh_points, vertex_ids, config.max_label_distance)
               if vertex_ids is not None else None)
    meta = {"source": "scannet", "scene_type": info.get("sceneType", ""), "axis_alignment": A.tolist(),
            "alignment": alignment.to_meta(), "frame_stride": config.frame_stride, "point_source": config.point_source,
            "voxel_size": config.voxel_size if config.point_source == "sensor" else None}
    return Scene(scene_id=scene_id, points=points, colors=colors, frames=frames, instance_ids=ids,
                 objects=objects, meta=meta)


def _size(info: dict[str, str], kind: str) -> tuple[int, int] | None:
    """(width, height) announced by ``<scene>.txt`` (``colorWidth`` ...), if any."""
    try:
        return int(info[f"{kind}Width"]), int(info[f"{kind}Height"])
    except (KeyError, ValueError):
        return None
