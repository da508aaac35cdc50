"""Instance-segmentation AP exactly as ScanNet's official ``evaluate_semantic_instance.py``.

The paper reports open-vocabulary instance segmentation with the ScanNet / ScanNet200 protocol
(LIFT-GS Sec 4, Tables 1-3). Every number here follows the benchmark script's rules, including
its quirks, so that scores are comparable with published ones:

* overlaps ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``; regions (GT and predictions) need at
  least 100 vertices; a match needs IoU **strictly** above the threshold;
* ground truth per vertex is ``label_id * 1000 + instance``; ids ``< 1000`` are "groups";
  vertices whose label is not an evaluated class are *void*;
* greedy matching per GT (GT in ascending id order, predictions in file order): the first
  unvisited prediction above the threshold matches; a further one turns the lower of the two
  scores into a false positive (the later prediction is not marked visited, as in the script);
* an unmatched prediction is a false positive unless the share of its vertices on void, group or
  too-small GT exceeds the threshold;
* AP integrates the precision-recall curve built from unique score thresholds plus the artificial
  (P=1, R=0) point with the script's ``np.convolve(recall, [-0.5, 0, 0.5])`` step widths;
* AP = 0 for a class with GT but no prediction, NaN (left out of means) for a class without GT.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from liftgs.eval import scannet200 as _sn

__all__ = [
    "OVERLAPS",
    "MIN_REGION_SIZE",
    "ClassSet",
    "InstancePrediction",
    "GtInstance",
    "PredInstance",
    "SceneMatches",
    "InstanceAPResult",
    "assign_instances",
    "evaluate_matches",
    "precision_recall",
    "average_precision",
    "evaluate_instances",
]

OVERLAPS: np.ndarray = np.append(np.arange(0.5, 0.95, 0.05), 0.25)  # [10]; exactly the script's floats
MIN_REGION_SIZE = 100


@dataclass(frozen=True)
class ClassSet:
    """The evaluated classes: label ids (``gt // 1000``), names, and optional named groups
    (e.g. ScanNet200 head / common / tail) over which class APs are also averaged."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    id_attribute: str | None = None  # the object attribute holding a benchmark's label id (set by
    # `liftgs convert scannet --label-map`): "label_id" (the tsv id, ScanNet200's), "nyu40_id"
    # (ScanNet v2's); None: objects are labelled by category name

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.ids) != len(self.names):
            raise ValueError(f"ClassSet: {len(self.ids)} ids but {len(self.names)} names; give one name per id")
        if len(set(self.ids)) != len(self.ids) or len(set(self.names)) != len(self.names):
            raise ValueError("ClassSet: ids and names must be unique")
        if any(i < 1 for i in self.ids):
            raise ValueError("ClassSet: label ids must be >= 1 (GT encodes label*1000+instance; label 0 is void)")

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "ClassSet":
        """Classes numbered 1..K in the given order (synthetic / custom vocabularies)."""
        return cls(ids=tuple(range(1, len(names) + 1)), names=tuple(names))

    @classmethod
    def scannet20(cls) -> "ClassSet":
        """The 18 ScanNet v2 instance classes."""
        return cls(ids=_sn.SCANNET20_INSTANCE_IDS, names=_sn.SCANNET20_INSTANCE_LABELS, id_attribute="nyu40_id")

    @classmethod
    def scannet200(cls) -> "ClassSet":
        """The 198 ScanNet200 instance classes with the head / common / tail split."""
        groups = {
            "head": tuple(_sn.HEAD_CATS_SCANNET200),
            "common": tuple(_sn.COMMON_CATS_SCANNET200),
            "tail": tuple(_sn.TAIL_CATS_SCANNET200),
        }
        return cls(ids=_sn.SCANNET200_INSTANCE_IDS, names=_sn.SCANNET200_INSTANCE_LABELS, groups=groups,
                   id_attribute="label_id")

    def name_of(self, label_id: int) -> str | None:
        return dict(zip(self.ids, self.names)).get(int(label_id))

    def label_of(self, category: str, attributes: dict | None = None) -> int | None:
        """The GT label id of an object, None = void. As the official scripts do, an object
        converted with ScanNet's label map is labelled by its mapped id (``id_attribute``:
        the raw category "kitchen cabinet" is ScanNet200's "kitchen cabinet" and ScanNet v2's
        NYU40 "cabinet"); otherwise by its category name."""
        attributes = attributes or {}
        if self.id_attribute is not None and self.id_attribute in attributes:
            value = int(attributes[self.id_attribute])
            return value if value in self.ids else None
        return dict(zip(self.names, self.ids)).get(category)


@dataclass
class InstancePrediction:
    """One predicted instance: a per-vertex mask, its class label id and its confidence."""

    mask: np.ndarray  # [P] bool (non-zero = inside)
    label_id: int
    score: float
    name: str = ""  # e.g. the mask file; used in error messages

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask).reshape(-1) != 0
        self.label_id = int(self.label_id)
        self.score = float(self.score)
        if not np.isfinite(self.score):
            raise ValueError(f"prediction {self.name or '?'}: confidence must be finite, got {self.score}")


@dataclass
class GtInstance:
    instance_id: int  # label_id * 1000 + instance
    label_id: int
    vert_count: int
    matched_pred: list[tuple[int, int]] = field(default_factory=list)  # (pred index, intersection)


@dataclass
class PredInstance:
    index: int  # position in the scene's prediction list (the greedy visit key within a scene)
    label_id: int
    vert_count: int
    confidence: float
    void_intersection: int
    matched_gt: list[tuple[int, int, int]] = field(default_factory=list)  # (gt id, gt verts, intersection)


@dataclass
class SceneMatches:
    """Per class name: the scene's GT instances and its (large enough, valid-class) predictions."""

    gt: dict[str, list[GtInstance]]
    pred: dict[str, list[PredInstance]]


def assign_instances(gt_ids: np.ndarray, preds: Sequence[InstancePrediction], classes: ClassSet,
                     min_region_size: int = MIN_REGION_SIZE, scene: str = "") -> SceneMatches:
    """Intersections between one scene's GT instances and predictions (the script's
    ``assign_instances_for_scan``). Predictions with an unknown label or < ``min_region_size``
    vertices are dropped, as in the script."""
    gt_ids = np.asarray(gt_ids, dtype=np.int64).reshape(-1)  # [P]
    id_to_name = dict(zip(classes.ids, classes.names))
    gt: dict[str, list[GtInstance]] = {name: [] for name in classes.names}
    uniq, counts = np.unique(gt_ids, return_counts=True)
    for inst_id, count in zip(uniq.tolist(), counts.tolist()):
        if inst_id != 0 and inst_id // 1000 in id_to_name:
            gt[id_to_name[inst_id // 1000]].append(GtInstance(inst_id, inst_id // 1000, int(count)))
    gt_index = {g.instance_id: g for name in gt for g in gt[name]}
    void = ~np.isin(gt_ids // 1000, np.asarray(classes.ids))  # [P]
    pred: dict[str, list[PredInstance]] = {name: [] for name in classes.names}
    for i, p in enumerate(preds):
        name = id_to_name.get(p.label_id)
        if name is None:
            continue
        if p.mask.shape[0] != gt_ids.shape[0]:
            raise ValueError(f"scene {scene or '?'}: prediction {p.name or i} has {p.mask.shape[0]} values "
                             f"but the ground truth has {gt_ids.shape[0]} vertices")
        num = int(np.count_nonzero(p.mask))
        if num < min_region_size:
            continue
        inst = PredInstance(i, p.label_id, num, p.score, int(np.count_nonzero(void & p.mask)))
        hit_ids, hit_counts = np.unique(gt_ids[p.mask], return_counts=True)
        for gid, inter in zip(hit_ids.tolist(), hit_counts.tolist()):
            g = gt_index.get(gid)
            if g is None or g.label_id != p.label_id:
                continue
            inst.matched_gt.append((g.instance_id, g.vert_count, int(inter)))
            g.matched_pred.append((len(pred[name]), int(inter)))
        pred[name].append(inst)
    return SceneMatches(gt=gt, pred=pred)


def precision_recall(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The script's curve: one (precision, recall) per unique score (ascending), then the
    artificial (1, 0) point last. ``y_true`` [M] 1 = TP, 0 = FP; ``y_score`` [M]."""
    order = np.argsort(y_score)
    y_score_sorted, y_true_sorted = y_score[order], y_true[order]
    cumsum = np.cumsum(y_true_sorted)
    _, unique_indices = np.unique(y_score_sorted, return_index=True)
    num_examples = len(y_score_sorted)
    num_true = cumsum[-1] if len(cumsum) > 0 else 0  # ScanNet PR #26: every prediction ignored
    precision = np.zeros(len(unique_indices) + 1)
    recall = np.zeros(len(unique_indices) + 1)
    cumsum = np.append(cumsum, 0)  # index -1 -> 0 for the first threshold
    for k, idx in enumerate(unique_indices):
        below = cumsum[idx - 1]  # true examples scored strictly below this threshold
        tp = num_true - below
        fp = num_examples - idx - tp
        fn = below + hard_false_negatives
        precision[k] = float(tp) / (tp + fp)
        recall[k] = float(tp) / (tp + fn)
    precision[-1], recall[-1] = 1.0, 0.0
    return precision, recall


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the curve as the script integrates it: step widths from a [-0.5, 0, 0.5]
    convolution of the recall sequence padded with its first value in front and 0 behind."""
    padded = np.concatenate([recall[:1], recall, [0.0]])
    step_widths = np.convolve(padded, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths))


def _collect_scene(m: SceneMatches, name: str, th: float, min_size: int, visited: set[tuple[int, int]],
                   si: int) -> tuple[list[float], list[float], int]:
    """TP/FP labels and scores of one class in one scene at one overlap (script inner loop)."""
    gts = [g for g in m.gt[name] if g.instance_id >= 1000 and g.vert_count >= min_size]
    preds = m.pred[name]
    cur_true = [1.0] * len(gts)
    cur_score = [-np.inf] * len(gts)
    cur_match = [False] * len(gts)
    hard_fn = 0
    for gi, g in enumerate(gts):
        found = False
        for pi, inter in g.matched_pred:
            p = preds[pi]
            if (si, p.index) in visited:
                continue
            if float(inter) / (g.vert_count + p.vert_count - inter) > th:
                if cur_match[gi]:  # second match: the lower score becomes a false positive
                    hi, lo = max(cur_score[gi], p.confidence), min(cur_score[gi], p.confidence)
                    cur_score[gi] = hi
                    cur_true.append(0.0)
                    cur_score.append(lo)
                    cur_match.append(True)
                else:
                    found = True
                    cur_match[gi] = True
                    cur_score[gi] = p.confidence
                    visited.add((si, p.index))
        hard_fn += 0 if found else 1
    y_true = [t for t, ok in zip(cur_true, cur_match) if ok]
    y_score = [s for s, ok in zip(cur_score, cur_match) if ok]
    for p in preds:
        if any(float(inter) / (gv + p.vert_count - inter) > th for _, gv, inter in p.matched_gt):
            continue
        ignore = p.void_intersection
        for gid, gv, inter in p.matched_gt:
            ignore += inter if gid < 1000 else 0  # group
            ignore += inter if gv < min_size else 0  # too-small GT
        if float(ignore) / p.vert_count <= th:
            y_true.append(0.0)
            y_score.append(p.confidence)
    return y_true, y_score, hard_fn


def evaluate_matches(matches: Sequence[SceneMatches], classes: ClassSet, overlaps: np.ndarray = OVERLAPS,
                     min_region_size: int = MIN_REGION_SIZE) -> np.ndarray:
    """AP [C, O] per class and overlap (the script's ``evaluate_matches``)."""
    ap = np.zeros((len(classes.names), len(overlaps)))
    for oi, th in enumerate(overlaps):
        visited: set[tuple[int, int]] = set()
        for ci, name in enumerate(classes.names):
            y_true, y_score, hard_fn = [], [], 0
            has_gt = has_pred = False
            for si, m in enumerate(matches):
                has_gt |= any(g.instance_id >= 1000 and g.vert_count >= min_region_size for g in m.gt[name])
                has_pred |= len(m.pred[name]) > 0
                t, s, fn = _collect_scene(m, name, float(th), min_region_size, visited, si)
                y_true += t
                y_score += s
                hard_fn += fn
            if has_gt and has_pred:
                precision, recall = precision_recall(np.asarray(y_true, float), np.asarray(y_score, float), hard_fn)
                ap[ci, oi] = average_precision(precision, recall)
            else:
                ap[ci, oi] = 0.0 if has_gt else np.nan
    return ap


def _nanmean(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(x)) if x.size else float("nan")


@dataclass
class InstanceAPResult:
    """AP per class and overlap plus the script's averages (``compute_averages``)."""

    classes: ClassSet
    overlaps: np.ndarray  # [O]
    ap: np.ndarray  # [C, O]; NaN = class without GT
    num_scenes: int = 0

    def _cols(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o50 = np.where(np.isclose(self.overlaps, 0.5))[0]
        o25 = np.where(np.isclose(self.overlaps, 0.25))[0]
        rest = np.where(~np.isclose(self.overlaps, 0.25))[0]
        return rest, o50, o25

    def per_class(self) -> dict[str, dict[str, float]]:
        """name -> {ap (mean over 0.5:0.95), ap50, ap25}; NaN when the class has no GT."""
        rest, o50, o25 = self._cols()
        return {name: {"ap": float(np.mean(self.ap[ci, rest])), "ap50": float(np.mean(self.ap[ci, o50])),
                       "ap25": float(np.mean(self.ap[ci, o25]))} for ci, name in enumerate(self.classes.names)}

    def summary(self) -> dict[str, float]:
        """Overall AP / AP50 / AP25 (nan-means over classes) and the same per class group."""
        rest, o50, o25 = self._cols()
        out = {"ap": _nanmean(self.ap[:, rest]), "ap50": _nanmean(self.ap[:, o50]),
               "ap25": _nanmean(self.ap[:, o25])}
        for group, members in self.classes.groups.items():
            rows = [ci for ci, name in enumerate(self.classes.names) if name in set(members)]
            sub = self.ap[rows]
            out.update({f"{group}_ap": _nanmean(sub[:, rest]), f"{group}_ap50": _nanmean(sub[:, o50]),
                        f"{group}_ap25": _nanmean(sub[:, o25])})
        return out


def evaluate_instances(scenes: Sequence[tuple[np.ndarray, Sequence[InstancePrediction]]], classes: ClassSet,
                       overlaps: np.ndarray = OVERLAPS, min_region_size: int = MIN_REGION_SIZE,
                       scene_names: Sequence[str] | None = None) -> InstanceAPResult:
    """Score predictions against GT over a set of scenes.

    ``scenes`` holds, per scene, the GT ids [P] (``label*1000+instance``, 0 = unannotated) and
    that scene's predictions (masks over the same P vertices).
    """
    names = list(scene_names) if scene_names is not None else [str(i) for i in range(len(scenes))]
    matches = [assign_instances(gt, preds, classes, min_region_size, scene=n)
               for (gt, preds), n in zip(scenes, names)]
    ap = evaluate_matches(matches, classes, np.asarray(overlaps, dtype=np.float64), min_region_size)
    return InstanceAPResult(classes=classes, overlaps=np.asarray(overlaps, dtype=np.float64), ap=ap,
                            num_scenes=len(scenes))
