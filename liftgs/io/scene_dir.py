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

Reading checks what ``scene.json`` says before anything trusts it, and refuses a bad entry
with one :class:`~liftgs.io.errors.DataError` naming ``scene.json`` and the field (e.g.
``frames[3].depth``):

* every file it names (``points``, ``frames[i].color`` / ``.depth`` / ``.instance``) is a path
  relative to the scene folder that stays inside it: no absolute path, no ``..``, no symlink
  leading out. A scene folder is data from elsewhere; reading it must not open other files.
* every camera is usable: ``K`` finite with positive focal lengths, ``viewmat`` finite and
  rigid (orthonormal rotation with determinant +1, last row ``0 0 0 1``). A failed pose
  (NaN, or an all-zero matrix some exporters write) is refused when the scene is read, not
  when a training step first renders from it.

:func:`read_scene` checks every frame (also with ``load_frames=False``), :func:`read_cameras`
every camera, :func:`read_frame` the frame it loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.config import save_json_atomic
from liftgs.files import replace_dir
from liftgs.io.errors import DataError, data_error
from liftgs.io.frames import RIGID_TOLERANCE
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
    "scene_file",
    "camera_problem",
    "list_scenes",
    "write_splits",
    "read_splits",
]

FORMAT_NAME = "liftgs-scene"
FORMAT_VERSION = 1
SCENE_JSON = "scene.json"
POINTS_PLY = "points.ply"
SPLITS_JSON = "splits.json"
FRAME_FILES = ("color", "depth", "instance")  # the file fields of a frame entry
_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_EYE3 = np.eye(3)


def _plain_name(name: Any) -> bool:
    """A scene id or frame name is a folder / file stem: non-empty, no separator, not hidden."""
    return (isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name
            and not name.startswith("."))


def _check_scene_id(scene_id: str) -> None:
    if not _plain_name(scene_id):
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
    if not isinstance(doc.get("version", -1), int):
        raise DataError(f"version must be an integer, got {doc.get('version')!r}", path)
    if doc.get("version", -1) > FORMAT_VERSION:
        raise DataError(f"format version {doc.get('version')} is newer than this liftgs reads "
                        f"({FORMAT_VERSION}); upgrade liftgs", path)
    for key in ("scene_id", "frames", "objects", "expressions", "meta", "num_points"):
        if key not in doc:
            raise DataError(f"scene.json lacks the key {key!r}", path)
    if not _plain_name(doc["scene_id"]):  # names label-cache and output folders
        raise DataError(f"scene_id {doc['scene_id']!r} is not a valid folder name (non-empty, no '/', "
                        "not starting with '.')", path)
    if not isinstance(doc["frames"], list) or not all(isinstance(e, dict) for e in doc["frames"]):
        raise DataError("frames must be a list of objects (one per frame)", path)
    for i, entry in enumerate(doc["frames"]):  # a name is a label-cache file stem
        name = entry.get("name", "")
        if name not in ("", None) and not _plain_name(name):
            raise DataError(f"frames[{i}].name {name!r} must be a plain file stem (no '/', not "
                            "starting with '.')", path)
    return doc


def scene_file(scene_path: str | Path, value: Any, field: str) -> Path:
    """The file that ``scene.json``'s ``field`` names, refused unless it stays inside the scene.

    ``value`` must be a relative path without ``..``; after following symlinks it must still lie
    inside ``scene_path``. A scene folder copied from elsewhere can then never make a reader open
    a file outside it.
    """
    return _SceneFiles(Path(scene_path))(value, field)


class _SceneFiles:
    """:func:`scene_file` for the many files of one scene: each folder is resolved once, each
    file costs one ``lstat`` (a full resolve only if the file itself is a symlink)."""

    def __init__(self, scene_path: Path) -> None:
        self.scene_path = scene_path
        self.json_path = scene_path / SCENE_JSON
        self.root = os.path.realpath(scene_path)
        self.real_dirs: dict[str, str] = {}

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def __call__(self, value: Any, field: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{field} must be a file path relative to the scene folder, got {value!r}",
                            self.json_path)
        parts = value.replace("\\", "/").split("/")
        if parts[0] == "" or (parts[0][1:2] == ":" and parts[0][:1].isalpha()):  # rooted, or a drive
            raise DataError(f"{field} is the absolute path {value!r}; paths must be relative to the scene "
                            "folder", self.json_path)
        if ".." in parts:
            raise DataError(f"{field} {value!r} contains '..'; paths must stay inside the scene folder",
                            self.json_path)
        folder = "/".join(parts[:-1])
        real_dir = self.real_dirs.get(folder)
        if real_dir is None:
            real_dir = self.real_dirs[folder] = os.path.realpath(os.path.join(self.root, *parts[:-1]))
        real = os.path.join(real_dir, parts[-1])
        if not self._inside(real_dir) or (os.path.islink(real) and not self._inside(os.path.realpath(real))):
            raise DataError(f"{field} {value!r} leads outside the scene folder through a symlink", self.json_path)
        return self.scene_path / value


def camera_problem(K: np.ndarray, viewmat: np.ndarray) -> tuple[str, str] | None:
    """``(field, problem)`` for the first thing wrong with a camera, or None if it is usable.

    Renderers and back-projection assume a pinhole ``K`` with positive focal lengths and a rigid
    world-to-camera ``viewmat``; anything else renders garbage or NaN several steps later.
    """
    if K.shape != (3, 3):
        return "K", f"must be a 3x3 matrix, got shape {K.shape}"
    if not np.isfinite(K).all():
        return "K", "holds NaN or infinite values"
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        return "K", f"focal lengths must be positive, got fx={K[0, 0]:g}, fy={K[1, 1]:g}"
    if viewmat.shape != (4, 4):
        return "viewmat", f"must be a 4x4 matrix, got shape {viewmat.shape}"
    if not np.isfinite(viewmat).all():
        return "viewmat", "holds NaN or infinite values (a failed pose?)"
    if np.abs(viewmat[3] - _LAST_ROW).max() > 1e-6:
        return "viewmat", f"last row must be 0 0 0 1, got {' '.join(f'{v:g}' for v in viewmat[3])}"
    R = viewmat[:3, :3]
    if np.abs(R @ R.T - _EYE3).max() > RIGID_TOLERANCE:  # the tolerance the converters check poses with
        return "viewmat", "is not rigid: its rotation is not orthonormal (scaled, sheared or all zero)"
    a, b, c, d, e, f, g, h, i = R.ravel().tolist()
    if a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) < 0:
        return "viewmat", "is not rigid: its rotation has determinant -1 (a reflection)"
    return None


def _camera(scene_path: Path, entry: dict[str, Any], index: int) -> Camera:
    json_path, where = scene_path / SCENE_JSON, f"frames[{index}]"
    for key in ("K", "viewmat", "width", "height"):
        if key not in entry:
            raise DataError(f"{where} lacks the key {key!r}", json_path)
    arrays = {}
    for key in ("K", "viewmat"):
        try:
            arrays[key] = np.asarray(entry[key], dtype=np.float64)
        except (ValueError, TypeError):
            raise DataError(f"{where}.{key} is not a matrix of numbers", json_path) from None
    bad = camera_problem(arrays["K"], arrays["viewmat"])
    if bad is not None:
        raise DataError(f"{where}.{bad[0]} {bad[1]}", json_path)
    for key in ("width", "height"):
        if isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] <= 0:
            raise DataError(f"{where}.{key} must be a positive integer, got {entry[key]!r}", json_path)
    return Camera(K=arrays["K"], viewmat=arrays["viewmat"], width=entry["width"], height=entry["height"])


def _check_frame(scene_path: Path, entry: dict[str, Any], index: int,
                 scene_files: _SceneFiles | None = None) -> tuple[Camera, dict[str, Path | None]]:
    """The camera and files of ``frames[index]``, every field checked (see the module notes)."""
    camera = _camera(scene_path, entry, index)
    scene_files = scene_files or _SceneFiles(scene_path)
    files = {key: scene_files(entry[key], f"frames[{index}].{key}") if entry.get(key) else None
             for key in FRAME_FILES}
    if files["color"] is None:
        raise DataError(f"frames[{index}].color is missing (every frame needs its colour image)",
                        scene_path / SCENE_JSON)
    return camera, files


def read_cameras(scene_path: str | Path) -> list[Camera]:
    """Cameras of every frame without loading any image (cheap)."""
    scene_path = Path(scene_path)
    doc = read_scene_json(scene_path)
    scene_files = _SceneFiles(scene_path)
    return [_check_frame(scene_path, e, i, scene_files)[0] for i, e in enumerate(doc["frames"])]


def _load_frame(scene_path: Path, entry: dict[str, Any], index: int,
                scene_files: _SceneFiles | None = None) -> Frame:
    camera, files = _check_frame(scene_path, entry, index, scene_files)
    H, W = camera.height, camera.width
    rgb = read_rgb(files["color"])
    depth = read_depth(files["depth"]) if files["depth"] is not None else None
    inst = read_instance_png(files["instance"]) if files["instance"] is not None else None
    for key, arr in (("color", rgb), ("depth", depth), ("instance", inst)):
        if arr is not None and arr.shape[:2] != (H, W):
            raise DataError(f"image is {arr.shape[1]}x{arr.shape[0]} but scene.json says {W}x{H}", files[key])
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
    scene_files = _SceneFiles(scene_path)
    ply_path = scene_files(doc.get("points", POINTS_PLY), "points")
    if not load_frames:  # frames are read later, one by one: check them all now
        for i, e in enumerate(doc["frames"]):
            _check_frame(scene_path, e, i, scene_files)
    pc = read_point_cloud(ply_path)
    if pc.points.shape[0] != int(doc["num_points"]):
        raise DataError(f"holds {pc.points.shape[0]} points but scene.json says {doc['num_points']}", ply_path)
    if doc.get("has_instance_ids") and pc.instance_ids is None:
        raise DataError("scene.json says the points carry instance ids but the PLY has no "
                        "'instance_id' property", ply_path)
    frames = ([_load_frame(scene_path, e, i, scene_files) for i, e in enumerate(doc["frames"])]
              if load_frames else [])
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
