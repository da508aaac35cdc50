"""Benchmark runner: scenes + a grounder -> instance AP, Acc@IoU and F1@IoU tables.

The model is reached through the small :class:`Grounder` protocol (ranked masks per phrase or
per referring expression), so the runner is tested with a fake grounder and any other method can
be plugged in. :class:`ModelGrounder` adapts ``liftgs.models.liftgs.inference``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from liftgs.eval.grounding import (
    MultiReferQuery,
    ReferQuery,
    grounding_accuracy,
    is_unique_target,
    mask_box,
    multi3drefer_f1,
)
from liftgs.eval.instance_ap import (
    MIN_REGION_SIZE,
    OVERLAPS,
    ClassSet,
    InstanceAPResult,
    InstancePrediction,
    SceneMatches,
    assign_instances,
    evaluate_matches,
)
from liftgs.eval.mesh_vertices import (
    PROTOCOL_POINTS,
    PROTOCOL_VERTICES,
    read_mesh_vertices,
    to_vertices,
    vertex_gt_ids,
)
from liftgs.eval.open_vocab import predict_instances, scene_gt_ids
from liftgs.eval.scannet_format import write_ids, write_predictions
from liftgs.eval.submission import Submission
from liftgs.types import Expression, Scene

__all__ = ["Ranked", "Grounder", "ModelGrounder", "EvalResults", "evaluate_scenes", "scene_predictions",
           "vocabulary_names", "TASKS"]

TASKS = ("instseg", "grounding")
Ranked = tuple[np.ndarray, np.ndarray]  # (masks [k, P] bool, scores [k]), best first


class Grounder(Protocol):
    def phrases(self, scene: Scene, phrases: list[str]) -> list[Ranked]: ...

    def expressions(self, scene: Scene, expressions: list[Expression]) -> list[Ranked]: ...


class ModelGrounder:
    """A :class:`Grounder` backed by ``liftgs.models.liftgs.inference``: ``ground`` for category names
    (pooled phrase vector as one query, as in pre-training) and its span variant
    ``ground_expressions`` for referring expressions (the target mention's tokens rank the masks)."""

    def __init__(self, model: Any, text_encoder: Any, top_k: int = 10, rank_by: str = "tokens") -> None:
        """``rank_by``: how phrase answers are ranked ("tokens": the decoder; "features": the
        Gaussian feature field, zero-shot after pre-training; see ``inference.ground``)."""
        from liftgs.models.liftgs import inference

        self.inference, self.model, self.text_encoder, self.top_k = inference, model, text_encoder, top_k
        self.rank_by = rank_by

    def _inputs(self, scene: Scene):
        import torch

        return torch.from_numpy(scene.points), torch.from_numpy(scene.colors)

    @staticmethod
    def _ranked(results: Sequence[Any]) -> list[Ranked]:
        out = []
        for r in results:
            masks, scores = r.masks, r.scores
            masks = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
            scores = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
            out.append((masks.astype(bool), scores.astype(np.float64)))
        return out

    def phrases(self, scene: Scene, phrases: list[str]) -> list[Ranked]:
        points, colors = self._inputs(scene)
        return self._ranked(self.inference.ground(self.model, self.text_encoder, points, colors, phrases,
                                                  top_k=self.top_k, rank_by=self.rank_by))

    def expressions(self, scene: Scene, expressions: list[Expression]) -> list[Ranked]:
        """``ground_expressions``: every token is a query, the first target span ranks proposals."""
        points, colors = self._inputs(scene)
        texts = [e.text for e in expressions]
        spans = [e.spans[0] if e.spans else None for e in expressions]
        return self._ranked(self.inference.ground_expressions(self.model, self.text_encoder, points, colors,
                                                              texts, spans, top_k=self.top_k))


@dataclass
class EvalResults:
    instseg: InstanceAPResult | None = None
    accuracy: dict[str, dict[str, float]] | None = None
    f1: dict[str, dict[str, float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _target_box(scene: Scene, target_id: int) -> np.ndarray:
    """GT box of one object: min / max of its points (per-point instance ids)."""
    if scene.instance_ids is None:
        raise ValueError(f"scene {scene.scene_id} has no per-point instance ids: cannot build GT boxes")
    box = mask_box(scene.points, scene.instance_ids == target_id)
    if box is None:
        raise ValueError(f"scene {scene.scene_id}: object {target_id} is a grounding target but has no points")
    return box


def _unique(scene: Scene, e: Expression) -> bool:
    tag = e.meta.get("eval_type") if isinstance(e.meta, dict) else None
    if tag in ("unique", "multiple"):
        return tag == "unique"
    return is_unique_target({k: o.category for k, o in scene.objects.items()}, e.target_ids[0])


def _has_distractor(scene: Scene, e: Expression) -> bool:
    if "has_distractor" in e.meta:
        return bool(e.meta["has_distractor"])
    cats = {scene.objects[t].category for t in e.target_ids if t in scene.objects}
    return any(o.category in cats and k not in e.target_ids for k, o in scene.objects.items())


def _ground_scene(scene: Scene, grounder: Grounder, score_threshold: float, submission: Submission | None = None
                  ) -> tuple[list[ReferQuery], list[MultiReferQuery]]:
    """Acc@IoU queries (single-target expressions, top-1 mask) and F1 queries (every
    expression; predicted set = masks scoring >= ``score_threshold``); ``submission`` also
    collects the benchmark entries of the scene's expressions."""
    exprs = list(scene.expressions)
    if not exprs:
        return [], []
    ranked = grounder.expressions(scene, exprs)
    if len(ranked) != len(exprs):
        raise ValueError(f"scene {scene.scene_id}: the grounder returned {len(ranked)} results for "
                         f"{len(exprs)} expressions")
    refer, multi = [], []
    for e, (masks, scores) in zip(exprs, ranked):
        targets = [_target_box(scene, t) for t in e.target_ids]
        pred_boxes = [mask_box(scene.points, m) for m in masks]
        if len(targets) == 1:
            refer.append(ReferQuery(pred_boxes[0] if pred_boxes else None, targets[0], _unique(scene, e)))
        chosen = [b for b, s in zip(pred_boxes, scores) if b is not None and s >= score_threshold]
        multi.append(MultiReferQuery(np.array(chosen).reshape(-1, 6), np.array(targets).reshape(-1, 6),
                                     _has_distractor(scene, e)))
    if submission is not None:
        submission.add_scene(scene, exprs, ranked)
    return refer, multi


def vocabulary_names(scene: Scene, classes: ClassSet, vocabulary: str) -> tuple[list[str], list[int]]:
    """The category names queried in ``scene`` and their label ids: every class of ``classes``
    ("all", the open-vocabulary protocol) or only the categories present in the scene ("scene")."""
    if vocabulary == "scene":
        present = {o.category for o in scene.objects.values()}
        names = [n for n in classes.names if n in present]
    else:
        names = list(classes.names)
    ids = [dict(zip(classes.names, classes.ids))[n] for n in names]
    return names, ids


def scene_predictions(scene: Scene, grounder: Grounder, classes: ClassSet, vocabulary: str
                      ) -> list[InstancePrediction]:
    """The benchmark predictions of one scene: every queried category name's ranked masks
    (empty masks dropped), labelled with that category, scored by the grounder."""
    names, ids = vocabulary_names(scene, classes, vocabulary)

    def predict(category_names: list[str]) -> list[tuple[np.ndarray, int, float]]:
        ranked = grounder.phrases(scene, category_names)
        if len(ranked) != len(category_names):
            raise ValueError(f"scene {scene.scene_id}: the grounder returned {len(ranked)} results for "
                             f"{len(category_names)} category names")
        out = []
        for index, (masks, scores) in enumerate(ranked):
            out += [(m, index, float(s)) for m, s in zip(masks, scores) if m.any()]
        return out

    return predict_instances(scene.num_points, names, ids, predict) if names else []


def _instseg_scene(scene: Scene, grounder: Grounder, classes: ClassSet, vocabulary: str,
                   pred_dir: Path | None, scans_root: Path | None = None) -> SceneMatches:
    """One scene's matches on its points, or on its ScanNet mesh's vertices when ``scans_root``
    is given (masks moved by nearest neighbour, :mod:`liftgs.eval.mesh_vertices`)."""
    if scans_root is None:
        gt = scene_gt_ids(scene, classes)
        preds = scene_predictions(scene, grounder, classes, vocabulary)
    else:
        mesh = read_mesh_vertices(scans_root, scene)
        gt = vertex_gt_ids(mesh, scene, classes)
        preds = to_vertices(scene_predictions(scene, grounder, classes, vocabulary), mesh.nearest_point)
    if pred_dir is not None:
        write_predictions(pred_dir / "predictions", scene.scene_id, preds)
        write_ids(pred_dir / "gt" / f"{scene.scene_id}.txt", gt)
    return assign_instances(gt, preds, classes, MIN_REGION_SIZE, scene=scene.scene_id)


def evaluate_scenes(scenes: Iterable[Scene], grounder: Grounder, classes: ClassSet | None,
                    tasks: Sequence[str] = TASKS, vocabulary: str = "all", score_threshold: float = 0.5,
                    pred_dir: str | Path | None = None, num_scenes: int | None = None,
                    scans_root: str | Path | None = None, submission: Submission | None = None) -> EvalResults:
    """Run the requested tasks over ``scenes`` (an iterable, consumed once with a progress bar).

    ``classes`` is the instance vocabulary (required for "instseg"); ``vocabulary`` = "all"
    queries every class name in every scene (the open-vocabulary protocol), "scene" only the
    categories present in the scene. ``pred_dir`` also writes the benchmark's files
    (``predictions/`` and ``gt/``) so the official script can re-score them. ``scans_root``
    (ScanNet's ``scans/`` folder) scores instance AP per vertex of each scan's mesh instead of per
    point (``info["instseg_protocol"]`` says which); ``submission`` collects the grounding
    benchmarks' entries (:class:`~liftgs.eval.submission.Submission`, written by the caller).
    """
    bad = set(tasks) - set(TASKS)
    if bad:
        raise ValueError(f"unknown tasks {sorted(bad)}; choose from {TASKS}")
    if vocabulary not in ("all", "scene"):
        raise ValueError(f"vocabulary must be 'all' or 'scene', got {vocabulary!r}")
    if "instseg" in tasks and classes is None:
        raise ValueError("instance segmentation needs a class vocabulary (classes=...)")
    pred_path = Path(pred_dir) if pred_dir is not None else None
    scans_path = Path(scans_root) if scans_root is not None else None
    matches, refer, multi, ids = [], [], [], []
    for scene in tqdm(scenes, total=num_scenes, desc="eval", unit="scene"):
        ids.append(scene.scene_id)
        if "instseg" in tasks:
            matches.append(_instseg_scene(scene, grounder, classes, vocabulary, pred_path, scans_path))
        if "grounding" in tasks:
            r, m = _ground_scene(scene, grounder, score_threshold, submission)
            refer += r
            multi += m
    out = EvalResults(info={"scenes": ids, "tasks": list(tasks), "vocabulary": vocabulary,
                            "score_threshold": score_threshold})
    if "instseg" in tasks:
        out.info["instseg_protocol"] = PROTOCOL_POINTS if scans_path is None else PROTOCOL_VERTICES
        ap = evaluate_matches(matches, classes, OVERLAPS, MIN_REGION_SIZE)
        out.instseg = InstanceAPResult(classes=classes, overlaps=OVERLAPS.copy(), ap=ap, num_scenes=len(matches))
    if "grounding" in tasks:
        out.accuracy = grounding_accuracy(refer)
        out.f1 = multi3drefer_f1(multi)
    return out
