"""Referential-grounding metrics: ScanRefer Acc@IoU and Multi3DRefer F1@IoU.

The paper scores referring expressions by the axis-aligned 3D box around the predicted mask's
points against the target's box (LIFT-GS Sec 4.2, Tables 4-6): Acc@k = share of expressions
with IoU >= k, split ScanRefer-style into *unique* (the target is the only object of its
category in the scene) and *multiple*. Multi-target expressions (Multi3DRefer, Zhang et al.
ICCV 2023) match predicted and GT boxes one-to-one with the Hungarian algorithm and score
F1 = 2 TP / (|pred| + |GT|) per query, where TP = matched pairs with IoU >= k; a query with no
target scores 1 only when nothing is predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from liftgs.geometry import box_from_points, box_iou

__all__ = [
    "THRESHOLDS",
    "ACC_THRESHOLDS",
    "mask_box",
    "box_iou_matrix",
    "is_unique_target",
    "ReferQuery",
    "grounding_accuracy",
    "MultiReferQuery",
    "multi3drefer_type",
    "f1_one_query",
    "multi3drefer_f1",
]

THRESHOLDS = (0.25, 0.5)  # ScanRefer / ReferIt3D Acc@IoU and Multi3DRefer F1@IoU
ACC_THRESHOLDS = (0.25, 0.5, 0.75)  # grounding accuracy: + Acc@0.75 of LIFT-GS's ablations (Table 4)


def mask_box(points: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Box [6] (min xyz, max xyz) of the points [P, 3] inside ``mask`` [P]; None if empty."""
    mask = np.asarray(mask).reshape(-1) != 0
    if mask.shape[0] != points.shape[0]:
        raise ValueError(f"mask has {mask.shape[0]} values but there are {points.shape[0]} points")
    return box_from_points(points[mask]) if mask.any() else None


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of axis-aligned boxes a [A, 6] and b [B, 6] (same result as ``box_iou``)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 6)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 6)
    lo = np.maximum(a[:, None, :3], b[None, :, :3])
    hi = np.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    vol_a = np.clip(a[:, 3:] - a[:, :3], 0, None).prod(-1)
    vol_b = np.clip(b[:, 3:] - b[:, :3], 0, None).prod(-1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def is_unique_target(categories: Mapping[int, str], target_id: int) -> bool:
    """ScanRefer's split: True when no other object in the scene shares the target's category."""
    cat = categories[int(target_id)]
    return sum(1 for c in categories.values() if c == cat) == 1


@dataclass
class ReferQuery:
    """One single-target expression: the top-ranked predicted box (None = no prediction, IoU 0)
    and the target's GT box; ``unique`` picks the ScanRefer subset (None = not split)."""

    pred_box: np.ndarray | None  # [6]
    gt_box: np.ndarray  # [6]
    unique: bool | None = None

    def iou(self) -> float:
        return 0.0 if self.pred_box is None else box_iou(self.pred_box, self.gt_box)


def grounding_accuracy(queries: Sequence[ReferQuery], thresholds: Sequence[float] = ACC_THRESHOLDS
                       ) -> dict[str, dict[str, float]]:
    """{"overall" | "unique" | "multiple": {"acc@0.25": ..., "acc@0.5": ..., "acc@0.75": ...,
    "miou": ..., "n": ...}}.

    Accuracy counts IoU >= threshold; a subset without queries gets NaN accuracies and n = 0."""
    ious = np.array([q.iou() for q in queries], dtype=np.float64)
    subsets = {
        "overall": np.ones(len(queries), dtype=bool),
        "unique": np.array([q.unique is True for q in queries], dtype=bool),
        "multiple": np.array([q.unique is False for q in queries], dtype=bool),
    }
    out: dict[str, dict[str, float]] = {}
    for name, sel in subsets.items():
        n = int(sel.sum())
        row = {f"acc@{t:g}": (float((ious[sel] >= t).mean()) if n else float("nan")) for t in thresholds}
        row["miou"] = float(ious[sel].mean()) if n else float("nan")
        row["n"] = n
        out[name] = row
    return out


@dataclass
class MultiReferQuery:
    """One Multi3DRefer-style query: all predicted boxes [k, 6] and all target boxes [g, 6]
    (either may be empty); ``has_distractor`` = other objects of the target category exist."""

    pred_boxes: np.ndarray  # [k, 6]
    gt_boxes: np.ndarray  # [g, 6]
    has_distractor: bool = False

    def __post_init__(self) -> None:
        self.pred_boxes = np.asarray(self.pred_boxes, dtype=np.float64).reshape(-1, 6)
        self.gt_boxes = np.asarray(self.gt_boxes, dtype=np.float64).reshape(-1, 6)


def multi3drefer_type(num_targets: int, has_distractor: bool) -> str:
    """Multi3DRefer's query types: zero / single target with or without distractors, multiple."""
    if num_targets == 0:
        return "zt_w_d" if has_distractor else "zt_wo_d"
    if num_targets == 1:
        return "st_w_d" if has_distractor else "st_wo_d"
    return "mt"


def f1_one_query(pred_boxes: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
                 ) -> dict[float, float]:
    """F1@t for one query: Hungarian matching maximising total IoU, TP = matched pairs with
    IoU >= t, F1 = 2 TP / (k + g). Zero targets: 1 if nothing is predicted, else 0."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 6)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 6)
    k, g = len(pred_boxes), len(gt_boxes)
    if g == 0:
        return {t: 1.0 if k == 0 else 0.0 for t in thresholds}
    if k == 0:
        return {t: 0.0 for t in thresholds}
    iou = box_iou_matrix(pred_boxes, gt_boxes)  # [k, g]
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = iou[rows, cols]
    return {t: 2.0 * float((matched >= t).sum()) / (k + g) for t in thresholds}


def multi3drefer_f1(queries: Sequence[MultiReferQuery], thresholds: Sequence[float] = THRESHOLDS
                    ) -> dict[str, dict[str, float]]:
    """Mean F1@t over queries, overall and per Multi3DRefer type (NaN for empty types)."""
    types = [multi3drefer_type(len(q.gt_boxes), q.has_distractor) for q in queries]
    scores = [f1_one_query(q.pred_boxes, q.gt_boxes, thresholds) for q in queries]
    out: dict[str, dict[str, float]] = {}
    for group in ("overall", "zt_wo_d", "zt_w_d", "st_wo_d", "st_w_d", "mt"):
        sel = [s for s, ty in zip(scores, types) if group == "overall" or ty == group]
        row = {f"f1@{t:g}": (float(np.mean([s[t] for s in sel])) if sel else float("nan")) for t in thresholds}
        row["n"] = len(sel)
        out[group] = row
    return out
