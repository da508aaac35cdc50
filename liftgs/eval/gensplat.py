"""GenSplat on held-out scenes: open-vocabulary 3D instance AP and semantic mIoU, no per-scene
optimisation (GenSplat summary, Highlights: only the 3DGS reconstruction is per scene).

    liftgs gensplat-eval --model RUN --data DIR --recon RECON --split all --out DIR
    liftgs gensplat-eval ... --liftgs liftgs-tiny-finetuned   # LIFT-GS on the same scenes, one table

A scene is scored from its reconstruction ``<recon>/<scene_id>/gaussians.ply``: the model sees
the Gaussians once per scene (``model(g, class_text)`` and/or ``model.encode(g)``), and its
per-Gaussian outputs are carried to the scene's evaluation points, which hold the ground truth
(``scene.points``, ``scene.instance_ids``, categories in ``scene.objects``).

**Transfer rule.** Every evaluation point takes the values of its nearest Gaussian centre
(Euclidean distance, ``scipy.spatial.cKDTree``). With ``opacity_floor`` f > 0 only Gaussians whose
opacity (sigmoid of the PLY's logit) is above f are candidates; every Gaussian still goes
through the model. A point takes its nearest candidate however far it is (the distances are
reported per scene: median, 95th percentile, maximum).

**Vocabulary.** The same :class:`~liftgs.eval.instance_ap.ClassSet` and vocabulary as
``liftgs eval`` uses for LIFT-GS (``--classes``, ``--vocabulary``; by default the sorted
categories of the evaluated scenes, every name queried in every scene). Each class name is
encoded by the text encoder; its pooled vector is one row of ``class_text`` [K, text_dim].

**Instances** (Mask2Former / Mask3D inference, one prediction per query): with
``p = softmax(class_logits)`` over the K classes and the no-object column, a query's class is
``argmax_k p[:K]``; its binary mask over the points is ``sigmoid(mask logit) > 0.5``; its score is
``p[class] x`` the mean ``sigmoid(mask logit)`` over the points of its mask. Queries with an empty
mask are dropped; the others are listed by descending score (the order the benchmark's greedy
matching visits them) and scored by :mod:`liftgs.eval.instance_ap` (AP, AP50, AP25, per class).

**Semantic segmentation** (one class per evaluation point), three rules:

* ``from-instances`` (Mask2Former semantic inference, a model with a trained instance decoder):
  ``argmax_k sum_q p_q[k] * sigmoid(mask_q(point))``;
* ``from-latents`` (a model trained through stage I only, GenSplat summary, Key Designs 1:
  Stage I): ``argmax_k cos(semantic_head(latent), class_text[k])`` of the point's Gaussian;
* ``from-predictions`` (the rule shared with any method that outputs scored instance masks, used
  to put LIFT-GS and GenSplat side by side): every instance prediction adds its score to its
  class at the points of its binary mask; a point takes the class with the largest sum, and a
  point no mask covers has no class.

IoU per class follows ScanNet's ``evaluate_semantic_label.py``: points whose ground truth is not
an evaluated class (unannotated points, other categories) are left out; TP, FP, FN are summed
over every scene; IoU = TP / (TP + FP + FN), NaN when that is 0/0; mIoU = mean over the other
classes. A point without a predicted class is a false negative of its ground-truth class.

**Spread over scenes.** AP50 and mIoU are also computed per scene (classes without ground truth
in a scene are left out of that scene's mean); the report gives their mean over scenes and its
standard error ``std(ddof=1) / sqrt(n)``. The pooled figures (AP, mIoU above) are the main ones;
the per-scene mean and SE say how much they would move with other rooms.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

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
from liftgs.eval.open_vocab import scene_gt_ids
from liftgs.eval.report import Table, instance_tables, to_markdown, write_report
from liftgs.eval.runner import Grounder, scene_predictions, vocabulary_names
from liftgs.types import Scene

__all__ = [
    "MASK_THRESHOLD",
    "SEMANTIC_RULES",
    "GAUSSIANS_FILE",
    "nearest_gaussian",
    "instance_predictions",
    "semantic_from_instances",
    "semantic_from_latents",
    "semantic_from_predictions",
    "semantic_counts",
    "SemanticResult",
    "MethodResult",
    "GenSplatEvalResults",
    "mean_se",
    "evaluate_gensplat",
    "GenSplatEvalConfig",
    "run_gensplat_eval",
    "gensplat_report",
    "recorded_stage",
    "main",
]

MASK_THRESHOLD = 0.5
SEMANTIC_RULES = ("from-instances", "from-latents", "from-predictions")
GAUSSIANS_FILE = "gaussians.ply"
STAGE_ONE = "semantic"  # stage I (semantic alignment): no trained instance decoder
# the GenSplat recipes (liftgs/recipes/gensplat.py) record their stage as the recipe's name
RECIPE_STAGES = {"gensplat-semantic": "semantic", "gensplat-instance": "instance"}
TASKS = ("instseg", "semantic")


# ------------------------------------------------------------------------------- the rules


def nearest_gaussian(points: np.ndarray, means: np.ndarray, opacities: np.ndarray | None = None,
                     opacity_floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(index [P] int64 into ``means``, distance [P]) of each point's nearest Gaussian centre.

    With ``opacity_floor`` > 0 only Gaussians of opacity > ``opacity_floor`` are candidates
    (``opacities`` [N], activated); the index still refers to the full array.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    means = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    if not 0.0 <= opacity_floor < 1.0:
        raise ValueError(f"opacity_floor must be in [0, 1), got {opacity_floor}")
    keep = None
    if opacity_floor > 0.0:
        if opacities is None:
            raise ValueError("an opacity floor needs the Gaussians' opacities")
        opacities = np.asarray(opacities).reshape(-1)
        if opacities.shape[0] != means.shape[0]:
            raise ValueError(f"{opacities.shape[0]} opacities for {means.shape[0]} Gaussians")
        keep = np.flatnonzero(opacities > opacity_floor)
        if keep.size == 0:
            raise ValueError(f"no Gaussian has an opacity above the floor {opacity_floor}")
    candidates = means if keep is None else means[keep]
    if candidates.shape[0] == 0:
        raise ValueError("no Gaussians to transfer from")
    distance, index = cKDTree(candidates).query(points, k=1)
    index = np.asarray(index, dtype=np.int64)
    return (index if keep is None else keep[index]), np.asarray(distance, dtype=np.float64)


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def instance_predictions(mask_logits: Any, class_logits: Any, label_ids: Sequence[int],
                         threshold: float = MASK_THRESHOLD) -> list[InstancePrediction]:
    """One prediction per query with a non-empty mask, by descending score.

    ``mask_logits`` [Q, P] over the evaluation points, ``class_logits`` [Q, K + 1] (last column =
    no object), ``label_ids[k]`` the benchmark label id of class k. Class = argmax of the
    softmax over the K classes; mask = ``sigmoid > threshold``; score = that class probability x
    mean mask probability over the mask.
    """
    masks, logits = _as_tensor(mask_logits), _as_tensor(class_logits)
    K = len(label_ids)
    if logits.ndim != 2 or logits.shape[1] != K + 1:
        raise ValueError(f"class_logits must be [Q, {K + 1}] ({K} classes + no object), got {list(logits.shape)}")
    if masks.ndim != 2 or masks.shape[0] != logits.shape[0]:
        raise ValueError(f"mask_logits must be [Q={logits.shape[0]}, P], got {list(masks.shape)}")
    if K == 0:
        return []
    prob, label = logits.softmax(-1)[:, :K].max(-1)
    sig = torch.sigmoid(masks)
    inside = sig > threshold
    count = inside.sum(1)
    confidence = (sig * inside).sum(1) / count.clamp_min(1)
    score = (prob * confidence).double().numpy()
    order = np.argsort(-score, kind="stable")
    inside_np, label_np, count_np = inside.numpy(), label.numpy(), count.numpy()
    return [InstancePrediction(mask=inside_np[q], label_id=int(label_ids[label_np[q]]), score=float(score[q]),
                               name=f"query {q}") for q in order if count_np[q] > 0]


def semantic_from_instances(mask_logits: Any, class_logits: Any) -> np.ndarray:
    """Mask2Former semantic inference: [P] class index ``argmax_k sum_q softmax(class_q)[k] *
    sigmoid(mask_q)`` (no-object column left out), from [Q, P] mask and [Q, K + 1] class logits."""
    masks, logits = _as_tensor(mask_logits), _as_tensor(class_logits)
    if logits.ndim != 2 or masks.ndim != 2 or masks.shape[0] != logits.shape[0] or logits.shape[1] < 2:
        raise ValueError(f"expected mask logits [Q, P] and class logits [Q, K + 1], got {list(masks.shape)} "
                         f"and {list(logits.shape)}")
    scores = torch.sigmoid(masks).T @ logits.softmax(-1)[:, :-1]  # [P, K]
    return scores.argmax(1).numpy().astype(np.int64)


def semantic_from_latents(embeddings: Any, class_text: Any) -> np.ndarray:
    """[P] class index ``argmax_k cos(embeddings[p], class_text[k])`` (embeddings [P, D] =
    ``semantic_head`` of the points' latents, class_text [K, D])."""
    emb, text = _as_tensor(embeddings), _as_tensor(class_text)
    if emb.ndim != 2 or text.ndim != 2 or emb.shape[1] != text.shape[1]:
        raise ValueError(f"semantic embeddings {list(emb.shape)} and class text {list(text.shape)} "
                         "must be [P, D] and [K, D]")
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(text, dim=1).T
    return cos.argmax(1).numpy().astype(np.int64)


def semantic_from_predictions(preds: Sequence[InstancePrediction], label_ids: Sequence[int],
                              num_points: int) -> np.ndarray:
    """[P] class index (into ``label_ids``) or -1: each prediction adds its score to its class on
    its mask's points; a point takes the class of largest sum, -1 where no positive score lands."""
    column = {int(i): k for k, i in enumerate(label_ids)}
    votes = np.zeros((int(num_points), len(column)), dtype=np.float64)
    for p in preds:
        if p.mask.shape[0] != num_points:
            raise ValueError(f"prediction {p.name}: mask has {p.mask.shape[0]} values for {num_points} points")
        if p.label_id in column:
            votes[p.mask, column[p.label_id]] += p.score
    if not column:
        return np.full(int(num_points), -1, dtype=np.int64)
    out = votes.argmax(1).astype(np.int64)
    out[votes.max(1) <= 0.0] = -1
    return out


def semantic_counts(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """[3, K] int64 TP, FP, FN per class (ScanNet's rule): ``pred`` / ``gt`` [P] class indices,
    -1 = no prediction / not evaluated; points with ``gt`` = -1 are left out."""
    pred, gt = np.asarray(pred).reshape(-1), np.asarray(gt).reshape(-1)
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predicted labels for {gt.shape[0]} points")
    valid = gt >= 0
    p, g = pred[valid], gt[valid]
    hit = p == g
    tp = np.bincount(g[hit], minlength=num_classes)
    fn = np.bincount(g, minlength=num_classes) - tp
    fp = np.bincount(p[~hit & (p >= 0)], minlength=num_classes)
    return np.stack([tp, fp, fn])[:, :num_classes].astype(np.int64)


def _iou(counts: np.ndarray) -> np.ndarray:
    tp, fp, fn = counts.astype(np.float64)
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard error (``std(ddof=1) / sqrt(n)``, NaN for n < 2) and n of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "n": n}


# ------------------------------------------------------------------------------- results


@dataclass
class SemanticResult:
    """Per-point semantic segmentation over a set of scenes: TP / FP / FN per class."""

    classes: ClassSet
    rule: str  # one of SEMANTIC_RULES
    counts: np.ndarray  # [3, K] int64: TP, FP, FN

    def iou(self) -> np.ndarray:
        return _iou(self.counts)

    def miou(self) -> float:
        return _nanmean(self.iou())

    def per_class(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.classes.names, self.iou())}


@dataclass
class MethodResult:
    """One method's figures: instance AP, its own semantic rule, the rule from its instance
    predictions, and per-scene AP50 / mIoU rows."""

    name: str
    instseg: InstanceAPResult | None = None
    semantic: SemanticResult | None = None  # the method's own rule (from-instances / from-latents)
    votes: SemanticResult | None = None  # from-predictions
    per_scene: list[dict[str, Any]] = field(default_factory=list)

    def scene_stats(self) -> dict[str, dict[str, float]]:
        """Mean, SE and n over scenes of each per-scene figure."""
        keys = [k for k in ("ap50", "miou", "miou_votes") if any(k in row for row in self.per_scene)]
        return {k: mean_se([row.get(k, float("nan")) for row in self.per_scene]) for k in keys}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.instseg is not None:
            out["instseg"] = {"summary": self.instseg.summary(), "per_class": self.instseg.per_class(),
                              "overlaps": self.instseg.overlaps, "ap_per_overlap": self.instseg.ap}
        for key, sem in (("semantic", self.semantic), ("semantic_from_predictions", self.votes)):
            if sem is not None:
                out[key] = {"rule": sem.rule, "miou": sem.miou(), "per_class_iou": sem.per_class(),
                            "tp_fp_fn": sem.counts}
        out["per_scene"] = self.per_scene
        out["scene_stats"] = self.scene_stats()
        return out


@dataclass
class GenSplatEvalResults:
    methods: list[MethodResult]
    classes: ClassSet
    info: dict[str, Any] = field(default_factory=dict)


class _Tally:
    """Accumulates one method's scenes."""

    def __init__(self, name: str, classes: ClassSet, instseg: bool, rule: str | None) -> None:
        self.name, self.classes, self.instseg, self.rule = name, classes, instseg, rule
        self.matches: list[SceneMatches] = []
        K = len(classes.names)
        self.sem = np.zeros((3, K), np.int64)
        self.votes = np.zeros((3, K), np.int64)
        self.rows: list[dict[str, Any]] = []

    def add(self, scene_id: str, gt_ids: np.ndarray, gt_class: np.ndarray,
            preds: list[InstancePrediction] | None, semantic: np.ndarray | None) -> None:
        K = len(self.classes.names)
        row: dict[str, Any] = {"scene": scene_id}
        if preds is not None:
            m = assign_instances(gt_ids, preds, self.classes, MIN_REGION_SIZE, scene=scene_id)
            self.matches.append(m)
            row["ap50"] = _nanmean(evaluate_matches([m], self.classes, OVERLAPS[:1], MIN_REGION_SIZE))
            row["num_predictions"] = len(preds)
            counts = semantic_counts(semantic_from_predictions(preds, self.classes.ids, gt_ids.shape[0]), gt_class, K)
            self.votes += counts
            row["miou_votes"] = _nanmean(_iou(counts))
        if semantic is not None:
            counts = semantic_counts(semantic, gt_class, K)
            self.sem += counts
            row["miou"] = _nanmean(_iou(counts))
        self.rows.append(row)

    def result(self) -> MethodResult:
        out = MethodResult(self.name, per_scene=self.rows)
        if self.instseg:
            ap = evaluate_matches(self.matches, self.classes, OVERLAPS, MIN_REGION_SIZE)
            out.instseg = InstanceAPResult(self.classes, OVERLAPS.copy(), ap, num_scenes=len(self.matches))
            out.votes = SemanticResult(self.classes, "from-predictions", self.votes)
        if self.rule is not None:
            out.semantic = SemanticResult(self.classes, self.rule, self.sem)
        return out


# ------------------------------------------------------------------------------- one scene


def _gt_classes(scene: Scene, classes: ClassSet) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark GT ids [P] and per-point class index [P] (-1 = not evaluated)."""
    gt_ids = scene_gt_ids(scene, classes)
    index = np.full(max(classes.ids) + 1, -1, np.int64)
    index[list(classes.ids)] = np.arange(len(classes.ids))
    return gt_ids, index[gt_ids // 1000]


def _model_text_dim(model: Any) -> int | None:
    for owner in (getattr(model, "config", None), model):
        dim = getattr(owner, "text_dim", None)
        if isinstance(dim, int):
            return dim
    return None


def _encoder_dim(encoder: Any) -> int:
    dim = getattr(encoder, "dim", None)
    return int(dim) if isinstance(dim, int) and dim > 0 else int(encoder.encode(["object"]).pooled.shape[1])


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


class _ClassText:
    """Pooled text vectors of class names, each name encoded once."""

    def __init__(self, encoder: Any, device: torch.device) -> None:
        self.encoder, self.device, self.cache = encoder, device, {}

    def __call__(self, names: list[str]) -> torch.Tensor:
        missing = [n for n in names if n not in self.cache]
        if missing:
            pooled = self.encoder.encode(missing).pooled
            self.cache.update({n: pooled[i].detach().float().cpu() for i, n in enumerate(missing)})
        return torch.stack([self.cache[n] for n in names]).to(self.device)


def _gensplat_scene(model: Any, scene: Scene, cloud: Any, to_input: Callable[[Any], Any], class_text: _ClassText,
                    classes: ClassSet, vocabulary: str, instseg: bool, rule: str | None, opacity_floor: float,
                    source: str) -> tuple[list[InstancePrediction] | None, np.ndarray | None, dict[str, Any]]:
    names, ids = vocabulary_names(scene, classes, vocabulary)
    to_global = np.array([classes.names.index(n) for n in names], dtype=np.int64)
    try:
        index, distance = nearest_gaussian(scene.points, cloud.means, cloud.opacities(), opacity_floor)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    info = {"num_gaussians": int(cloud.means.shape[0]), "distance_median": float(np.median(distance)),
            "distance_p95": float(np.percentile(distance, 95)), "distance_max": float(distance.max())}
    if not names:  # nothing of the vocabulary in this scene ("scene" vocabulary): nothing predicted
        nothing = np.full(scene.num_points, -1, np.int64)
        return ([] if instseg else None), (nothing if rule is not None else None), info
    device = _model_device(model)
    g = to_input(cloud)
    if hasattr(g, "to"):
        g = g.to(device)
    text = class_text(names)
    preds = semantic = None
    idx = torch.from_numpy(index).to(device)
    with torch.no_grad():
        if instseg or rule == "from-instances":
            out = model(g, text)
            mask_logits, class_logits = out.mask_logits, out.class_logits
            N = int(cloud.means.shape[0])
            if mask_logits.ndim != 2 or mask_logits.shape[1] != N:
                raise ValueError(f"{source}: the model returned mask logits {list(mask_logits.shape)} for {N} "
                                 "Gaussians (expected [Q, N])")
            if class_logits.ndim != 2 or class_logits.shape[1] != len(names) + 1:
                raise ValueError(f"{source}: the model returned class logits {list(class_logits.shape)} for "
                                 f"{len(names)} classes (expected [Q, {len(names) + 1}])")
            on_points = mask_logits.index_select(1, idx)  # [Q, P]
            if instseg:
                preds = instance_predictions(on_points, class_logits, ids)
            if rule == "from-instances":
                semantic = to_global[semantic_from_instances(on_points, class_logits)]
        if rule == "from-latents":
            latents = model.encode(g)
            unique, inverse = np.unique(index, return_inverse=True)
            emb = model.semantic_head(latents.index_select(0, torch.from_numpy(unique).to(latents.device)))
            semantic = to_global[semantic_from_latents(emb, text)[inverse.reshape(-1)]]
    return preds, semantic, info


# ------------------------------------------------------------------------------- all scenes


def _default_to_input() -> Callable[[Any], Any]:
    from liftgs.models import family_module

    return family_module("gensplat").GaussianInput.from_splat


def evaluate_gensplat(scenes: Sequence[tuple[Scene, Path]], model: Any, text_encoder: Any, classes: ClassSet, *,
                      instseg: bool = True, semantic: str | None = "from-instances", vocabulary: str = "all",
                      opacity_floor: float = 0.0, to_input: Callable[[Any], Any] | None = None,
                      baseline: Grounder | None = None, names: tuple[str, str] = ("GenSplat", "LIFT-GS"),
                      num_scenes: int | None = None) -> GenSplatEvalResults:
    """Score a GenSplat ``model`` (and optionally a ``baseline`` grounder, e.g. LIFT-GS's
    :class:`~liftgs.eval.runner.ModelGrounder`, on the same scenes and vocabulary).

    ``scenes`` yields ``(scene, gaussians_ply)`` pairs (consumed once, with a progress bar);
    ``semantic`` is "from-instances", "from-latents" or None; ``to_input`` turns a
    :class:`~liftgs.io.splat_ply.SplatCloud` into the model's input (default:
    ``GaussianInput.from_splat`` of the gensplat family). The baseline's instance predictions
    come from :func:`liftgs.eval.runner.scene_predictions`, as ``liftgs eval`` makes them.
    """
    from liftgs.io.splat_ply import read_splat_ply

    if vocabulary not in ("all", "scene"):
        raise ValueError(f"vocabulary must be 'all' or 'scene', got {vocabulary!r}")
    if semantic not in (None, "from-instances", "from-latents"):
        raise ValueError(f"semantic must be 'from-instances', 'from-latents' or None, got {semantic!r}")
    if not instseg and semantic is None:
        raise ValueError("nothing to evaluate: ask for instance segmentation, semantic segmentation or both")
    to_input = to_input or _default_to_input()
    class_text = _ClassText(text_encoder, _model_device(model))
    tally = _Tally(names[0], classes, instseg, semantic)
    other = _Tally(names[1], classes, True, None) if baseline is not None else None
    transfer, ids = {}, []
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        for scene, ply in tqdm(scenes, total=num_scenes, desc="gensplat-eval", unit="scene"):
            ids.append(scene.scene_id)
            gt_ids, gt_class = _gt_classes(scene, classes)
            preds, sem, info = _gensplat_scene(model, scene, read_splat_ply(ply), to_input, class_text, classes,
                                               vocabulary, instseg, semantic, opacity_floor, str(ply))
            transfer[scene.scene_id] = info
            tally.add(scene.scene_id, gt_ids, gt_class, preds, sem)
            if other is not None:
                other.add(scene.scene_id, gt_ids, gt_class, scene_predictions(scene, baseline, classes, vocabulary),
                          None)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    methods = [tally.result()] + ([other.result()] if other is not None else [])
    info = {"scenes": ids, "vocabulary": vocabulary, "instseg": instseg, "semantic": semantic,
            "opacity_floor": opacity_floor, "mask_threshold": MASK_THRESHOLD,
            "transfer": "nearest Gaussian centre" + (f" with opacity > {opacity_floor}" if opacity_floor > 0 else ""),
            "transfer_distance": transfer}
    return GenSplatEvalResults(methods, classes, info)


# ------------------------------------------------------------------------------- report


def _pm(stat: dict[str, float] | None) -> str:
    if not stat or not math.isfinite(stat["mean"]):
        return "-"
    se = "-" if not math.isfinite(stat["se"]) else f"{100 * stat['se']:.1f}"
    return f"{100 * stat['mean']:.1f} ± {se}"


def summary_table(results: GenSplatEvalResults) -> Table:
    """One row per (method, semantic rule): pooled AP / AP50 / AP25 / mIoU and per-scene
    AP50 / mIoU as mean ± SE."""
    t = Table(f"Summary ({len(results.info.get('scenes', []))} scenes; per scene: mean ± SE)",
              ["model", "semantic rule", "AP", "AP50", "AP25", "mIoU", "AP50 per scene", "mIoU per scene"])
    for m in results.methods:
        ap = m.instseg.summary() if m.instseg is not None else {"ap": None, "ap50": None, "ap25": None}
        stats = m.scene_stats()
        rows = [(m.semantic, "miou"), (m.votes, "miou_votes")] if m.semantic is not None else [(m.votes, "miou_votes")]
        for sem, key in rows:
            if sem is None and m.instseg is None:
                continue
            t.rows.append([m.name, sem.rule if sem is not None else "-", ap["ap"], ap["ap50"], ap["ap25"],
                           sem.miou() if sem is not None else None, _pm(stats.get("ap50")), _pm(stats.get(key))])
    return t


def semantic_table(m: MethodResult) -> Table | None:
    sems = [s for s in (m.semantic, m.votes) if s is not None]
    if not sems:
        return None
    t = Table(f"{m.name}: semantic segmentation IoU", ["class", *[s.rule for s in sems]])
    t.rows.append(["mIoU", *[s.miou() for s in sems]])
    per = [s.per_class() for s in sems]
    for name in m.semantic.classes.names if m.semantic is not None else m.votes.classes.names:
        t.rows.append([name, *[p[name] for p in per]])
    return t


def gensplat_report(results: GenSplatEvalResults) -> tuple[list[Table], dict[str, Any]]:
    tables = [summary_table(results)]
    for m in results.methods:
        if m.instseg is not None:
            tables += instance_tables(m.instseg, title=f"{m.name}: instance segmentation")
        sem = semantic_table(m)
        if sem is not None:
            tables.append(sem)
    data = {"info": results.info, "classes": {"ids": results.classes.ids, "names": results.classes.names},
            "methods": [m.to_json() for m in results.methods]}
    return tables, data


# ------------------------------------------------------------------------------- CLI


@dataclass
class GenSplatEvalConfig:
    """Options of ``liftgs gensplat-eval``."""

    model: Path | None = None  # GenSplat run folder, checkpoint (step_*) or model folder
    data: Path | None = None  # dataset root (scene folders + splits.json) or one scene folder
    recon: Path | None = None  # reconstructions: <recon>/<scene_id>/gaussians.ply
    split: str = "val"  # a split of splits.json, or "all" (every scene of the root)
    out: Path = Path("gensplat_eval")
    # auto = instseg,semantic; semantic only for a stage-I run (no trained decoder)
    tasks: str = "auto"
    # auto = from-instances, or from-latents for a stage-I run
    semantic: Literal["auto", "from-instances", "from-latents"] = "auto"
    text_encoder: str = "auto"  # auto = the one the run recorded, else minilm
    vocabulary: Literal["all", "scene"] = "all"  # query every class name, or only the scene's categories
    classes: str = "data"  # data (the evaluated scenes' categories) | scannet20 | scannet200 | a JSON file
    opacity_floor: float = 0.0  # only Gaussians of opacity above this receive evaluation points
    max_scenes: int | None = None  # evaluate only the first N scenes
    liftgs: str | None = None  # also evaluate this LIFT-GS model (path or shipped name) on the same scenes
    liftgs_text_encoder: str = "auto"  # auto = the one its run recorded, else minilm
    top_k: int = 10  # LIFT-GS masks kept per query (as liftgs eval)
    device: str = "cpu"

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        for flag, value in (("--model", self.model), ("--data", self.data), ("--recon", self.recon)):
            if value is None:
                raise ValueError(f"{flag} is required (gensplat-eval needs --model, --data and --recon)")
        if self.tasks != "auto":
            bad = set(self.task_list) - set(TASKS)
            if bad or not self.task_list:
                raise ValueError(f"--tasks must be auto or a comma-separated subset of {','.join(TASKS)}, "
                                 f"got {self.tasks!r}")
        if not 0.0 <= self.opacity_floor < 1.0:
            raise ValueError(f"--opacity-floor must be in [0, 1), got {self.opacity_floor}")
        if self.max_scenes is not None and self.max_scenes < 1:
            raise ValueError(f"--max-scenes must be >= 1, got {self.max_scenes}")
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]


def _run_config(model_dir: Path) -> dict[str, Any] | None:
    """The config of the run that wrote ``model_dir``: the shipped ``run_config.json``, the run's
    ``config.json`` (``RUN/model`` or ``RUN/checkpoints/step_*/model``), else None."""
    candidates = [model_dir / "run_config.json", model_dir.parent / "config.json"]
    if model_dir.parent.parent.name == "checkpoints":
        candidates.append(model_dir.parent.parent.parent / "config.json")
    for path in candidates:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "recipe" in doc:
            return doc
    return None


def _settings(doc: dict[str, Any]) -> dict[str, Any]:
    inner = doc.get(doc.get("recipe", ""), {})
    return inner if isinstance(inner, dict) else {}


def recorded_stage(model_dir: str | Path) -> str | None:
    """The training stage of a GenSplat model ("semantic" = stage I only, "instance" = with the
    instance decoder): the recipe its run recorded (``gensplat-semantic`` / ``gensplat-instance``)
    or a ``stage`` field of the run's settings or of the model's config.json; None if unknown."""
    model_dir = Path(model_dir)
    doc = _run_config(model_dir)
    if doc is not None:
        stage = _settings(doc).get("stage", doc.get("stage"))
        if isinstance(stage, str):
            return stage
        if doc.get("recipe") in RECIPE_STAGES:
            return RECIPE_STAGES[doc["recipe"]]
    try:
        stage = json.loads((model_dir / "config.json").read_text()).get("stage")
    except (OSError, ValueError, AttributeError):
        return None
    return stage if isinstance(stage, str) else None


def _recorded_text_encoder(model_dir: Path) -> str | None:
    doc = _run_config(model_dir)
    if doc is None:
        return None
    name = doc.get("text_encoder", _settings(doc).get("text_encoder"))
    return name if isinstance(name, str) and name else None


def _scene_paths(cfg: GenSplatEvalConfig) -> list[Path]:
    from liftgs.io import list_scenes
    from liftgs.io.scene_dir import SCENE_JSON

    if (cfg.data / SCENE_JSON).is_file():
        paths = [cfg.data]
    else:
        paths = list_scenes(cfg.data) if cfg.split == "all" else list_scenes(cfg.data, cfg.split)
    if cfg.max_scenes is not None:
        paths = paths[: cfg.max_scenes]
    if not paths:
        raise ValueError(f"split {cfg.split!r} of {cfg.data} has no scenes")
    return paths


def _check_scenes(paths: list[Path], recon: Path) -> list[tuple[Path, Path]]:
    """(scene folder, gaussians.ply) per scene; one-line errors for a scene without instance
    ids or without a reconstruction."""
    from liftgs.io.errors import DataError
    from liftgs.io.scene_dir import SCENE_JSON, read_scene_json

    if not recon.is_dir():
        raise DataError("reconstruction root is not a directory (run `liftgs recon` first)", recon)
    out = []
    for p in paths:
        doc = read_scene_json(p)
        if not doc.get("has_instance_ids"):
            raise DataError("the scene's points carry no instance ids: nothing to score against", p / SCENE_JSON)
        ply = recon / str(doc.get("scene_id", p.name)) / GAUSSIANS_FILE
        if not ply.is_file():
            raise DataError(f"no reconstruction for scene {doc.get('scene_id', p.name)!r} "
                            f"(run `liftgs recon --data {p} --out {recon}`)", ply)
        out.append((p, ply))
    return out


def _load(path: str | Path, family: str, device: str) -> tuple[Any, Path]:
    from liftgs.models import load_model, model_family
    from liftgs.train.checkpoint import resolve_model_dir

    model_dir = resolve_model_dir(path)
    found = model_family(model_dir)
    if found != family:
        hint = "use `liftgs eval` for LIFT-GS models" if found == "liftgs" else f"expected a {family} model"
        raise ValueError(f"{model_dir / 'config.json'}: family is {found!r}; {hint}")
    return load_model(model_dir, map_location=device).eval(), model_dir


def _text_encoder(name: str, model: Any, model_dir: Path, device: str) -> tuple[Any, str]:
    from liftgs.text import load_text_encoder

    if name == "auto":
        name = _recorded_text_encoder(model_dir) or "minilm"
    encoder = load_text_encoder(name, device=device)
    want, got = _model_text_dim(model), _encoder_dim(encoder)
    if want is not None and want != got:
        raise ValueError(f"{model_dir / 'config.json'}: text_dim is {want} but the text encoder {name!r} gives "
                         f"{got}-d vectors; pass the encoder the model was trained with (--text-encoder)")
    return encoder, name


def _plan(cfg: GenSplatEvalConfig, model_dir: Path) -> tuple[bool, str | None, str | None]:
    """(instance segmentation?, semantic rule or None, recorded stage)."""
    from liftgs.io.errors import DataWarning

    stage = recorded_stage(model_dir)
    stage_one = stage == STAGE_ONE
    tasks = cfg.task_list if cfg.tasks != "auto" else (["semantic"] if stage_one else list(TASKS))
    rule = None
    if "semantic" in tasks:
        rule = cfg.semantic if cfg.semantic != "auto" else ("from-latents" if stage_one else "from-instances")
    if stage_one and ("instseg" in tasks or rule == "from-instances"):
        warnings.warn(DataWarning(f"{model_dir}: the run recorded stage {stage!r} (no trained instance "
                                  "decoder); its instance outputs are untrained"), stacklevel=2)
    return "instseg" in tasks, rule, stage


def run_gensplat_eval(cfg: GenSplatEvalConfig, model: Any = None, text_encoder: Any = None,
                      to_input: Callable[[Any], Any] | None = None, baseline: Grounder | None = None
                      ) -> GenSplatEvalResults:
    """Validate the inputs, load what is not given (``model``, ``text_encoder``, ``baseline``
    override loading, for tests and other methods) and evaluate."""
    from liftgs.eval.cli import load_class_set
    from liftgs.io import read_scene

    pairs = _check_scenes(_scene_paths(cfg), Path(cfg.recon))
    classes = load_class_set(cfg.classes, [p for p, _ in pairs])
    t0 = time.perf_counter()
    model_dir = Path(cfg.model)
    if model is None:
        model, model_dir = _load(cfg.model, "gensplat", cfg.device)
    instseg, rule, stage = _plan(cfg, model_dir)
    encoder_name = getattr(text_encoder, "name", "given")
    if text_encoder is None:
        text_encoder, encoder_name = _text_encoder(cfg.text_encoder, model, model_dir, cfg.device)
    elif (want := _model_text_dim(model)) is not None and want != _encoder_dim(text_encoder):
        raise ValueError(f"{model_dir / 'config.json'}: text_dim is {want} but the text encoder gives "
                         f"{_encoder_dim(text_encoder)}-d vectors")
    liftgs_encoder = None
    if baseline is None and cfg.liftgs is not None:
        from liftgs.eval.runner import ModelGrounder

        lmodel, ldir = _load(cfg.liftgs, "liftgs", cfg.device)
        lenc, liftgs_encoder = _text_encoder(cfg.liftgs_text_encoder, lmodel, ldir, cfg.device)
        baseline = ModelGrounder(lmodel, lenc, top_k=cfg.top_k)
    print(f"loaded {cfg.model}{' and ' + str(cfg.liftgs) if cfg.liftgs else ''} in {time.perf_counter() - t0:.1f} s")
    scenes = ((read_scene(p, load_frames=False), ply) for p, ply in pairs)
    names = (f"GenSplat ({cfg.model})", f"LIFT-GS ({cfg.liftgs})" if cfg.liftgs else "baseline")
    results = evaluate_gensplat(scenes, model, text_encoder, classes, instseg=instseg, semantic=rule,
                                vocabulary=cfg.vocabulary, opacity_floor=cfg.opacity_floor, to_input=to_input,
                                baseline=baseline, names=names, num_scenes=len(pairs))
    results.info.update({"model": str(cfg.model), "stage": stage, "data": str(cfg.data), "split": cfg.split,
                         "recon": str(cfg.recon), "text_encoder": encoder_name,
                         "liftgs": cfg.liftgs, "liftgs_text_encoder": liftgs_encoder})
    return results


def main(argv: list[str]) -> int:
    """The command; the report is written once every scene is scored (a failure writes nothing)."""
    from liftgs.config import parse_cli, to_dict

    description = "\n\n".join(__doc__.split("\n\n")[:2])  # the summary and the usage lines
    cfg = parse_cli(GenSplatEvalConfig, argv, prog="liftgs gensplat-eval", description=description)
    results = run_gensplat_eval(cfg)
    tables, data = gensplat_report(results)
    data["config"] = to_dict(cfg)
    heading = f"{cfg.model} on {cfg.data} ({cfg.split})" + (f" vs {cfg.liftgs}" if cfg.liftgs else "")
    md, js = write_report(cfg.out, tables, data, heading=heading)
    print(to_markdown(tables, heading))
    print(f"wrote {md} and {js}")
    return 0

