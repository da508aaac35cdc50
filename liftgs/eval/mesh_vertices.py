"""Instance AP on ScanNet's mesh vertices, the domain the official benchmark scores.

ScanNet's ``evaluate_semantic_instance.py`` takes one value per vertex of
``<scene>_vh_clean_2.ply``, while scenes written by ``liftgs convert scannet`` hold the 5 cm
sensor point cloud the model sees (paper appendix A.1), so AP counted on those points is not the
published number: points and vertices sample surfaces differently, and an object of fewer than
100 points is not evaluated at all. Given the scan folders (``liftgs eval --scannet-scans DIR``),
the runner

1. reads the scan's mesh, aggregation and segments files again with the converter's readers
   (:mod:`liftgs.io.scannet`), giving GT instance ids per vertex (``label * 1000 + instance``,
   labels from the scene's object categories exactly as on points);
2. moves the vertices into the scene frame with the transform the converter recorded
   (``scene.json`` ``meta.alignment``: ``p = rotation @ p_raw + translation``, ScanNet's
   ``axisAlignment`` or the floor levelling of a test scan);
3. gives every vertex the mask values of the scene point nearest to it
   (``scipy.spatial.cKDTree``), for every predicted instance; vertices no sensor ray reached
   take their nearest point's value too, so every vertex is scored, as the benchmark does.

A wrong scans folder or alignment is caught by a guard: the scene's points must lie on the
mesh (median distance to the nearest vertex at most :data:`MAX_MEDIAN_DISTANCE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.eval.instance_ap import ClassSet, InstancePrediction
from liftgs.eval.open_vocab import object_labels
from liftgs.eval.scannet_format import gt_ids_from_instances
from liftgs.io.errors import DataError
from liftgs.types import Scene

__all__ = ["MAX_MEDIAN_DISTANCE", "PROTOCOL_POINTS", "PROTOCOL_VERTICES", "MeshVertices", "scan_files",
           "scene_alignment", "check_scans", "read_mesh_vertices", "vertex_gt_ids", "to_vertices"]

MAX_MEDIAN_DISTANCE = 0.1  # metres; the converter's max_label_distance
PROTOCOL_POINTS, PROTOCOL_VERTICES = "points", "mesh vertices"  # what instance AP was counted on


def scan_files(scans_root: str | Path, scene_id: str) -> tuple[Path, Path, Path]:
    """Mesh, aggregation and segments files of ``scene_id`` in ScanNet's ``scans/`` layout."""
    scan = Path(scans_root) / scene_id
    return (scan / f"{scene_id}_vh_clean_2.ply", scan / f"{scene_id}.aggregation.json",
            scan / f"{scene_id}_vh_clean_2.0.010000.segs.json")


def scene_alignment(meta: dict[str, Any], where: str | Path) -> np.ndarray:
    """The raw-scan -> scene transform [4, 4] the converter recorded in ``meta["alignment"]``;
    a missing or malformed entry is a DataError naming ``where`` and the field."""
    al = meta.get("alignment") if isinstance(meta, dict) else None
    if not isinstance(al, dict):
        raise DataError("field meta.alignment is missing: the mesh cannot be placed in the scene frame "
                        "(not a scene written by `liftgs convert scannet`?)", where)
    try:
        R = np.asarray(al["rotation"], dtype=np.float64)
        t = np.asarray(al["translation"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"field meta.alignment needs 'rotation' [3, 3] and 'translation' [3] ({exc})", where) from exc
    if R.shape != (3, 3) or t.shape != (3,) or not (np.isfinite(R).all() and np.isfinite(t).all()):
        raise DataError(f"field meta.alignment: rotation must be 3x3 and translation 3 finite numbers, got "
                        f"{list(R.shape)} and {list(t.shape)}", where)
    A = np.eye(4)
    A[:3, :3], A[:3, 3] = R, t
    return A


def check_scans(scans_root: str | Path, scene_paths: Sequence[str | Path]) -> None:
    """Before anything runs: every scene records its alignment and has its mesh, aggregation and
    segments files under ``scans_root``; the first problem is one DataError naming the file."""
    from liftgs.io.scene_dir import SCENE_JSON, read_scene_json

    scans_root = Path(scans_root)
    if not scans_root.is_dir():
        raise DataError("--scannet-scans: not a folder (ScanNet's scans/ folder, one folder per scan)", scans_root)
    for path in scene_paths:
        doc = read_scene_json(path)
        scene_alignment(doc["meta"], Path(path) / SCENE_JSON)
        for f in scan_files(scans_root, doc["scene_id"]):
            if not f.is_file():
                raise DataError(f"missing: --scannet-scans needs it to score scene {doc['scene_id']} per mesh "
                                "vertex", f)


@dataclass
class MeshVertices:
    """One scan's mesh in the scene frame, its GT instances and the point -> vertex transfer."""

    vertices: np.ndarray  # [V, 3] float64, scene frame
    instance_ids: np.ndarray  # [V] int32, aggregation objectId, -1 = none
    nearest_point: np.ndarray  # [V] int64, index of the scene point nearest to each vertex
    path: Path  # the mesh file

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


def _check_objects(scene: Scene, objects: dict, agg_path: Path) -> None:
    for oid, obj in objects.items():
        mine = scene.objects.get(oid)
        if mine is None or mine.category != obj.category:
            have = "no such object" if mine is None else f"{mine.category!r}"
            raise DataError(f"segGroups objectId {oid} ({obj.category!r}) does not match scene {scene.scene_id} "
                            f"({have}): a different scan or annotation version", agg_path)


def read_mesh_vertices(scans_root: str | Path, scene: Scene) -> MeshVertices:
    """Read ``scene``'s ScanNet mesh and annotation from ``scans_root`` (see the module docstring)."""
    from scipy.spatial import cKDTree

    from liftgs.io.ply import read_point_cloud
    from liftgs.io.scannet import read_scannet_instances

    mesh_path, agg_path, segs_path = scan_files(scans_root, scene.scene_id)
    A = scene_alignment(scene.meta, f"scene {scene.scene_id} (scene.json)")
    raw = read_point_cloud(mesh_path).points.astype(np.float64)  # [V, 3]
    vertices = raw @ A[:3, :3].T + A[:3, 3]
    ids, objects = read_scannet_instances(agg_path, segs_path, len(vertices))
    _check_objects(scene, objects, agg_path)
    if scene.num_points == 0:
        raise DataError(f"scene {scene.scene_id} has no points to transfer to the mesh", mesh_path)
    points = scene.points.astype(np.float64)
    on_mesh, _ = cKDTree(vertices).query(points, k=1)
    median = float(np.median(on_mesh))
    if median > MAX_MEDIAN_DISTANCE:
        raise DataError(f"the points of scene {scene.scene_id} lie {median:.3f} m (median) from this mesh in the "
                        f"frame of scene.json meta.alignment: not the scan the scene was converted from, or "
                        f"another alignment", mesh_path)
    _, nearest = cKDTree(points).query(vertices, k=1)
    return MeshVertices(vertices=vertices, instance_ids=ids, nearest_point=np.asarray(nearest, dtype=np.int64),
                        path=mesh_path)


def vertex_gt_ids(mesh: MeshVertices, scene: Scene, classes: ClassSet) -> np.ndarray:
    """Benchmark GT ids [V] (``label*1000+instance``) per vertex; objects whose category is not
    in ``classes`` are void (the labelling :func:`liftgs.eval.open_vocab.scene_gt_ids` uses on points)."""
    return gt_ids_from_instances(mesh.instance_ids, object_labels(scene, classes))


def to_vertices(preds: Sequence[InstancePrediction], nearest_point: np.ndarray) -> list[InstancePrediction]:
    """Each prediction's mask [P] over the scene's points as a mask [V] over the mesh vertices:
    vertex v takes the value of point ``nearest_point[v]``."""
    out, needed = [], int(nearest_point.max(initial=-1)) + 1
    for p in preds:
        if p.mask.shape[0] < needed:
            raise ValueError(f"prediction {p.name or '?'} has {p.mask.shape[0]} values, fewer than the scene's "
                             "points")
        out.append(InstancePrediction(mask=p.mask[nearest_point], label_id=p.label_id, score=p.score, name=p.name))
    return out
