"""The scene directory format (documented in docs/scene_format.md).

A dataset root holds one folder per scene plus ``splits.json``::

    <root>/splits.json                 {"train": [scene ids], "val": [...]}
    <root>/<scene_id>/scene.json       intrinsics, poses, frame files, objects, expressions, meta
    <root>/<scene_id>/points.ply       x y z, red green blue (uchar), *_float colours, instance_id
    <root>/<scene_id>/frames/NNNNNN.png|jpg        colour
    <root>/<scene_id>/frames/NNNNNN_depth.png      uint16 millimetres, 0 = invalid
    <root>/<scene_id>/frames/NNNNNN_inst.png       uint16 instance id + 1, 0 = none (optional)

Writing then reading gives back the same :class:`~liftgs.types.Scene`: points, colours, ids,
``K`` and ``viewmat`` bit for bit, PNG colour exactly, depth at millimetre resolution (the
writer rounds to mm). A scene is written into a temporary folder next to its destination and
renamed into place, so a failure never leaves a half-written scene.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.config import save_json_atomic
from liftgs.files import replace_dir
from liftgs.io.errors import DataError, data_error
from liftgs.io.images import (read_depth, read_instance_png, read_rgb, write_depth_mm,
                              write_instance_png, write_rgb)
from liftgs.io.ply import read_point_cloud, write_point_cloud
from liftgs.types import Camera, Expression, Frame, ObjectInfo, Scene

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "write_scene",
    "read_scene",
    "read_frame",
    "read_cameras",
    "read_scene_json",
    "list_scenes",
    "write_splits",
    "read_splits",
]

FORMAT_NAME = "liftgs-scene"
FORMAT_VERSION = 1
SCENE_JSON = "scene.json"
POINTS_PLY = "points.ply"
SPLITS_JSON = "splits.json"


def _check_scene_id(scene_id: str) -> None:
    if not scene_id or "/" in scene_id or "\\" in scene_id or scene_id.startswith("."):
        raise DataError(f"scene_id {scene_id!r} is not a valid folder name (non-empty, no '/', "
                        "not starting with '.')")


def _frame_entry(index: int, frame: Frame, image_format: str) -> dict[str, Any]:
    stem = f"frames/{index:06d}"
    return {
        "name": frame.name,
        "color": f"{stem}.{image_format}",
        "depth": f"{stem}_depth.png" if frame.depth is not None else None,
        "instance": f"{stem}_inst.png" if frame.instance_ids is not None else None,
        "width": frame.camera.width,
        "height": frame.camera.height,
        "K": frame.camera.K.tolist(),
        "viewmat": frame.camera.viewmat.tolist(),
    }


def _scene_json(scene: Scene, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "scene_id": scene.scene_id,
        "points": POINTS_PLY,
        "num_points": scene.num_points,
        "has_instance_ids": scene.instance_ids is not None,
        "frames": entries,
        "objects": [{"id": int(k), "category": o.category, "attributes": o.attributes}
                    for k, o in sorted(scene.objects.items())],
        "expressions": [
            {"text": e.text, "target_ids": e.target_ids, "spans": [list(s) for s in e.spans],
             "anchor_ids": e.anchor_ids, "source": e.source, "ann_id": e.ann_id, "relation": e.relation,
             "meta": e.meta}
            for e in scene.expressions
        ],
        "meta": scene.meta,
    }


def write_scene(scene: Scene, root: str | Path, image_format: str = "png", overwrite: bool = True,
                jpeg_quality: int = 95) -> Path:
    """Write ``scene`` to ``root/<scene_id>/`` atomically and return that folder.

    ``image_format`` "png" keeps colour lossless (exact round trip); "jpg" is smaller (real
    scans, whose colour is JPEG already). Depth is rounded to millimetres; NaN / <= 0 /
    > 65.535 m depths are stored as 0 = invalid.
    """
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    _check_scene_id(scene.scene_id)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest = root / scene.scene_id
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    entries = [_frame_entry(i, f, image_format) for i, f in enumerate(scene.frames)]
    doc = _scene_json(scene, entries)
    try:
        text = json.dumps(doc, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"scene {scene.scene_id}: objects/expressions/meta must be JSON-serialisable "
                        f"with finite numbers ({exc})") from exc
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{scene.scene_id}.tmp-"))
    try:
        (tmp / "frames").mkdir()
        write_point_cloud(tmp / POINTS_PLY, scene.points, scene.colors, scene.instance_ids)
        for frame, entry in zip(scene.frames, entries):
            write_rgb(tmp / entry["color"], frame.rgb, jpeg_quality=jpeg_quality)
            if frame.depth is not None:
                write_depth_mm(tmp / entry["depth"], frame.depth)
            if frame.instance_ids is not None:
                write_instance_png(tmp / entry["instance"], frame.instance_ids)
        (tmp / SCENE_JSON).write_text(text)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_scene_json(scene_path: str | Path) -> dict[str, Any]:
    """The parsed, validated ``scene.json`` of a scene folder."""
    path = Path(scene_path) / SCENE_JSON
    if not path.is_file():
        raise DataError("scene.json is missing (not a scene directory?)", path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(path, "cannot parse scene.json (truncated or corrupt?)", exc) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise DataError(f"not a liftgs scene file (expected format {FORMAT_NAME!r})", path)
    if int(doc.get("version", -1)) > FORMAT_VERSION:
        raise DataError(f"format version {doc.get('version')} is newer than this liftgs reads "
                        f"({FORMAT_VERSION}); upgrade liftgs", path)
    for key in ("scene_id", "frames", "objects", "expressions", "meta", "num_points"):
        if key not in doc:
            raise DataError(f"scene.json lacks the key {key!r}", path)
    return doc


def _camera(entry: dict[str, Any], where: str) -> Camera:
    try:
        return Camera(K=np.array(entry["K"]), viewmat=np.array(entry["viewmat"]),
                      width=entry["width"], height=entry["height"])
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{where}: bad camera ({exc})") from exc


def read_cameras(scene_path: str | Path) -> list[Camera]:
    """Cameras of every frame without loading any image (cheap)."""
    doc = read_scene_json(scene_path)
    return [_camera(e, f"{Path(scene_path) / SCENE_JSON} frame {i}") for i, e in enumerate(doc["frames"])]


def _load_frame(scene_path: Path, entry: dict[str, Any], index: int) -> Frame:
    camera = _camera(entry, f"{scene_path / SCENE_JSON} frame {index}")
    H, W = camera.height, camera.width
    rgb = read_rgb(scene_path / entry["color"])
    depth = read_depth(scene_path / entry["depth"]) if entry.get("depth") else None
    inst = read_instance_png(scene_path / entry["instance"]) if entry.get("instance") else None
    for key, arr in (("color", rgb), ("depth", depth), ("instance", inst)):
        if arr is not None and arr.shape[:2] != (H, W):
            raise DataError(f"image is {arr.shape[1]}x{arr.shape[0]} but scene.json says {W}x{H}",
                            scene_path / entry[key])
    return Frame(camera=camera, rgb=rgb, depth=depth, instance_ids=inst, name=entry.get("name", ""))


def read_frame(scene_path: str | Path, index: int) -> Frame:
    """Load frame ``index`` of a scene folder (colour, depth, instance ids if present)."""
    scene_path = Path(scene_path)
    frames = read_scene_json(scene_path)["frames"]
    if not -len(frames) <= index < len(frames):
        raise IndexError(f"{scene_path}: frame {index} out of range ({len(frames)} frames)")
    return _load_frame(scene_path, frames[index], index % len(frames))


def read_scene(scene_path: str | Path, load_frames: bool = True) -> Scene:
    """Read a scene folder. With ``load_frames=False`` ``frames`` is empty (use
    :func:`read_cameras` / :func:`read_frame` to get them lazily)."""
    scene_path = Path(scene_path)
    doc = read_scene_json(scene_path)
    ply_path = scene_path / doc.get("points", POINTS_PLY)
    pc = read_point_cloud(ply_path)
    if pc.points.shape[0] != int(doc["num_points"]):
        raise DataError(f"holds {pc.points.shape[0]} points but scene.json says {doc['num_points']}", ply_path)
    if doc.get("has_instance_ids") and pc.instance_ids is None:
        raise DataError("scene.json says the points carry instance ids but the PLY has no "
                        "'instance_id' property", ply_path)
    frames = [_load_frame(scene_path, e, i) for i, e in enumerate(doc["frames"])] if load_frames else []
    json_path = scene_path / SCENE_JSON
    try:
        objects = {int(o["id"]): ObjectInfo(category=o["category"], attributes=dict(o.get("attributes", {})))
                   for o in doc["objects"]}
        expressions = [Expression(text=e["text"], target_ids=e["target_ids"],
                                  spans=[tuple(s) for s in e.get("spans", [])],
                                  anchor_ids=e.get("anchor_ids", []), source=e.get("source", ""),
                                  ann_id=e.get("ann_id", ""), relation=e.get("relation", ""),
                                  meta=dict(e.get("meta", {})))
                       for e in doc["expressions"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise data_error(json_path, "bad objects / expressions entry", exc) from exc
    return Scene(scene_id=doc["scene_id"], points=pc.points, colors=pc.colors, frames=frames,
                 instance_ids=pc.instance_ids if doc.get("has_instance_ids") else None,
                 objects=objects, expressions=expressions, meta=doc["meta"])


def write_splits(root: str | Path, splits: dict[str, list[str]]) -> Path:
    """Write ``root/splits.json`` ({"train": [...], "val": [...], ...}) atomically."""
    clean = {str(k): [str(s) for s in v] for k, v in splits.items()}
    path = Path(root) / SPLITS_JSON
    save_json_atomic(path, clean)
    return path


def read_splits(root: str | Path) -> dict[str, list[str]]:
    path = Path(root) / SPLITS_JSON
    if not path.is_file():
        raise DataError("splits.json is missing (write it with write_splits)", path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise data_error(path, "cannot parse splits.json", exc) from exc
    if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
        raise DataError('splits.json must map split names to lists of scene ids, e.g. {"train": [...]}', path)
    return doc


def list_scenes(root: str | Path, split: str | None = None) -> list[Path]:
    """Scene folders under ``root``: every one (sorted by name) or those of ``split``
    in the order ``splits.json`` lists them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset root is not a directory", root)
    if split is None:
        return sorted(p for p in root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / SCENE_JSON).is_file())
    splits = read_splits(root)
    if split not in splits:
        raise DataError(f"no split {split!r}; splits.json has {sorted(splits)}", root / SPLITS_JSON)
    out = []
    for scene_id in splits[split]:
        if not (root / scene_id / SCENE_JSON).is_file():
            raise DataError(f"split {split!r} lists scene {scene_id!r} but {root / scene_id / SCENE_JSON} "
                            "is missing", root / SPLITS_JSON)
        out.append(root / scene_id)
    return out
