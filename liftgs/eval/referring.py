"""Referring-segmentation metrics on point / Gaussian masks, as GenSplat reports them.

GenSplat (CVPR 2026, Table 1) scores 3D referring segmentation on ScanRefer with mIoU and
Acc@0.25 / Acc@0.5 and on Multi3DRefer with mIoU; the masks live on the Gaussians (or points),
so a mask here is a boolean vector over the scene's elements and ``points`` are their
positions (Gaussian centres or points).

* ScanRefer (single target): ``mask_iou`` per expression, mIoU = mean over expressions
  (as the 3D referring-segmentation evaluations compute it, e.g. MDIN ``tool/test_3dres.py``);
  Acc@k of the axis-aligned box around the predicted mask vs the target's box, as the ScanRefer
  protocol and LIFT-GS score it (reusing :func:`liftgs.eval.grounding.grounding_accuracy`).
* Multi3DRefer (zero / one / several targets): F1@k of Multi3DRefer's own evaluator (boxes of
  the predicted masks vs boxes of the target masks, Hungarian matching,
  :func:`liftgs.eval.grounding.f1_one_query`), and the mIoU of the union of the predicted masks
  vs the union of the target masks, as the 3D-GRES evaluation (MDIN ``tool/test_3dgres.py``)
  computes it: a zero-target expression scores 1 when nothing is predicted and 0 otherwise.

Exact definitions: docs/metrics.md#referring-segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from liftgs.eval.grounding import (
    THRESHOLDS,
    ReferQuery,
    f1_one_query,
    grounding_accuracy,
    mask_box,
    multi3drefer_type,
)

__all__ = [
    "mask_iou",
    "mean_mask_iou",
    "union_iou",
    "SegReferQuery",
    "scanrefer_segmentation",
    "MultiSegReferQuery",
    "multi3drefer_segmentation",
]

MULTI3DREFER_GROUPS = ("overall", "zt_wo_d", "zt_w_d", "st_wo_d", "st_w_d", "mt")


def _as_mask(mask: np.ndarray, name: str, size: int | None = None) -> np.ndarray:
    """A 1-D boolean mask (non-zero = inside); ``size`` checks its length."""
    arr = np.asarray(mask)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mask, got shape {arr.shape}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name} must be boolean or numeric, got dtype {arr.dtype}")
    if size is not None and arr.shape[0] != size:
        raise ValueError(f"{name} has {arr.shape[0]} values but there are {size} points")
    return arr != 0


def _as_mask_stack(masks: np.ndarray | Sequence[np.ndarray], name: str, size: int) -> np.ndarray:
    """Masks [k, size] as booleans (k may be 0)."""
    if isinstance(masks, np.ndarray):
        arr = masks.reshape(0, size) if masks.size == 0 else masks
    else:
        arr = np.stack([np.asarray(m) for m in masks]) if len(masks) else np.zeros((0, size), bool)
    if arr.ndim != 2 or arr.shape[1] != size:
        raise ValueError(f"{name} must be masks of shape [k, {size}], got shape {arr.shape}")
    return _as_mask(arr.reshape(-1), name).reshape(arr.shape)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in thresholds)
    if not ts or not all(0.0 < t <= 1.0 for t in ts):
        raise ValueError(f"thresholds must be non-empty and in (0, 1], got {list(thresholds)}")
    return ts


def _check_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{name} must have shape [P, 3], got {pts.shape}")
    return pts


def mask_iou(pred_mask: np.ndarray, target_mask: np.ndarray) -> float:
    """|pred ∩ target| / |pred ∪ target| of two masks [P] (non-zero = inside).

    Two empty masks agree and score 1 (the zero-target convention below); otherwise an empty
    mask scores 0."""
    pred = _as_mask(pred_mask, "pred_mask")
    target = _as_mask(target_mask, "target_mask", pred.shape[0])
    union = int(np.count_nonzero(pred | target))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & target)) / union


def mean_mask_iou(pred_masks: Sequence[np.ndarray], target_masks: Sequence[np.ndarray]) -> float:
    """mIoU over expressions: the mean of the per-expression :func:`mask_iou` (each expression
    weighs the same, whatever its size); NaN when there is no expression."""
    if len(pred_masks) != len(target_masks):
        raise ValueError(f"pred_masks has {len(pred_masks)} entries but target_masks has {len(target_masks)}")
    if not pred_masks:
        return float("nan")
    return float(np.mean([mask_iou(p, t) for p, t in zip(pred_masks, target_masks)]))


def union_iou(pred_masks: np.ndarray | Sequence[np.ndarray], target_masks: np.ndarray | Sequence[np.ndarray],
              num_points: int) -> float:
    """IoU of the union of the predicted masks [k, P] vs the union of the target masks [g, P]
    (k, g >= 0): 1 when both unions are empty (nothing predicted for a zero-target
    expression), 0 when exactly one is empty."""
    preds = _as_mask_stack(pred_masks, "pred_masks", num_points)
    targets = _as_mask_stack(target_masks, "target_masks", num_points)
    return mask_iou(preds.any(axis=0), targets.any(axis=0))


@dataclass
class SegReferQuery:
    """One single-target expression: the predicted mask [P] (may be empty = no prediction), the
    target's mask [P] (non-empty) over the elements at ``points`` [P, 3]; ``unique`` picks the
    ScanRefer subset (None = not split; see ``liftgs.eval.runner``: ``Expression.meta["eval_type"]``
    or :func:`liftgs.eval.grounding.is_unique_target`)."""

    points: np.ndarray  # [P, 3]
    pred_mask: np.ndarray  # [P]
    target_mask: np.ndarray  # [P]
    unique: bool | None = None

    def __post_init__(self) -> None:
        self.points = _check_points(self.points)
        self.pred_mask = _as_mask(self.pred_mask, "pred_mask", self.points.shape[0])
        self.target_mask = _as_mask(self.target_mask, "target_mask", self.points.shape[0])
        if not self.target_mask.any():
            raise ValueError("target_mask is empty: a single-target expression needs a target with points")


def scanrefer_segmentation(queries: Sequence[SegReferQuery], thresholds: Sequence[float] = THRESHOLDS
                           ) -> dict[str, dict[str, float]]:
    """{"overall" | "unique" | "multiple": {"miou", "acc@0.25", "acc@0.5", "box_miou", "n"}}.

    ``miou``: mean mask IoU over the subset's expressions. ``acc@k``: share whose predicted-mask
    box has IoU >= k with the target box (empty prediction = IoU 0), from
    :func:`liftgs.eval.grounding.grounding_accuracy`; ``box_miou`` is the mean of those box
    IoUs. A subset without expressions gets NaN and n = 0."""
    ts = _check_thresholds(thresholds)
    for i, q in enumerate(queries):
        if not isinstance(q, SegReferQuery):
            raise ValueError(f"queries[{i}] must be a SegReferQuery, got {type(q).__name__}")
    box_queries = [ReferQuery(mask_box(q.points, q.pred_mask), mask_box(q.points, q.target_mask), q.unique)
                   for q in queries]
    out = grounding_accuracy(box_queries, ts)
    ious = np.array([mask_iou(q.pred_mask, q.target_mask) for q in queries], dtype=np.float64)
    subsets = {
        "overall": np.ones(len(queries), dtype=bool),
        "unique": np.array([q.unique is True for q in queries], dtype=bool),
        "multiple": np.array([q.unique is False for q in queries], dtype=bool),
    }
    result: dict[str, dict[str, float]] = {}
    for name, sel in subsets.items():
        row = out[name]
        result[name] = {
            "miou": float(ious[sel].mean()) if sel.any() else float("nan"),
            **{f"acc@{t:g}": row[f"acc@{t:g}"] for t in ts},
            "box_miou": row["miou"],
            "n": row["n"],
        }
    return result


@dataclass
class MultiSegReferQuery:
    """One Multi3DRefer expression: predicted instance masks [k, P] and target instance masks
    [g, P] over the elements at ``points`` [P, 3] (k, g >= 0; g = 0 is a zero-target
    expression); ``has_distractor`` = other objects of the target category are in the scene.
    An empty predicted mask is no prediction (it has no box and is left out of the set)."""

    points: np.ndarray  # [P, 3]
    pred_masks: np.ndarray  # [k, P]
    target_masks: np.ndarray  # [g, P]
    has_distractor: bool = False

    def __post_init__(self) -> None:
        self.points = _check_points(self.points)
        n = self.points.shape[0]
        self.pred_masks = _as_mask_stack(self.pred_masks, "pred_masks", n)
        self.target_masks = _as_mask_stack(self.target_masks, "target_masks", n)
        if len(self.target_masks) and not self.target_masks.any(axis=1).all():
            raise ValueError("target_masks holds an empty mask: every target needs points")

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Predicted boxes [k', 6] (non-empty masks only) and target boxes [g, 6]."""
        pred = [mask_box(self.points, m) for m in self.pred_masks if m.any()]
        gt = [mask_box(self.points, m) for m in self.target_masks]
        return np.array(pred, dtype=np.float64).reshape(-1, 6), np.array(gt, dtype=np.float64).reshape(-1, 6)

    def union_iou(self) -> float:
        return union_iou(self.pred_masks, self.target_masks, self.points.shape[0])


def multi3drefer_segmentation(queries: Sequence[MultiSegReferQuery], thresholds: Sequence[float] = THRESHOLDS
                              ) -> dict[str, dict[str, float]]:
    """{group: {"miou", "f1@0.25", "f1@0.5", "n"}} for "overall" and each Multi3DRefer type
    ("zt_wo_d", "zt_w_d", "st_wo_d", "st_w_d", "mt").

    ``miou``: mean over expressions of :func:`union_iou` (zero-target: 1 if nothing is
    predicted, else 0). ``f1@k``: mean over expressions of Multi3DRefer's F1 on the boxes of
    the masks (:func:`liftgs.eval.grounding.f1_one_query`). Empty groups get NaN and n = 0."""
    ts = _check_thresholds(thresholds)
    for i, q in enumerate(queries):
        if not isinstance(q, MultiSegReferQuery):
            raise ValueError(f"queries[{i}] must be a MultiSegReferQuery, got {type(q).__name__}")
    types = [multi3drefer_type(len(q.target_masks), q.has_distractor) for q in queries]
    f1s = [f1_one_query(*q.boxes(), ts) for q in queries]
    ious = [q.union_iou() for q in queries]
    out: dict[str, dict[str, float]] = {}
    for group in MULTI3DREFER_GROUPS:
        sel = [i for i, ty in enumerate(types) if group == "overall" or ty == group]
        row: dict[str, float] = {"miou": float(np.mean([ious[i] for i in sel])) if sel else float("nan")}
        for t in ts:
            row[f"f1@{t:g}"] = float(np.mean([f1s[i][t] for i in sel])) if sel else float("nan")
        row["n"] = len(sel)
        out[group] = row
    return out
