"""Referring-segmentation metrics (mask IoU, ScanRefer mIoU / Acc, Multi3DRefer F1 / mIoU)
on hand-computed masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liftgs.eval.referring import (
    MultiSegReferQuery,
    SegReferQuery,
    mask_iou,
    mean_mask_iou,
    multi3drefer_segmentation,
    scanrefer_segmentation,
    union_iou,
)

# a grid of points: x = 0..30, y and z in {0, 1}; a mask selecting x in [a, b] has the box
# [a, 0, 0, b, 1, 1] (box IoU = 1-D overlap / union of the x intervals) and 4 points per column
POINTS = np.array([[x, y, z] for x in range(31) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
P = len(POINTS)


def cols(a: int, b: int) -> np.ndarray:
    """Mask of the points with a <= x <= b."""
    return (POINTS[:, 0] >= a) & (POINTS[:, 0] <= b)


EMPTY = np.zeros(P, dtype=bool)


def test_mask_iou_hand_computed_and_empty_masks():
    assert mask_iou(cols(0, 2), cols(0, 1)) == pytest.approx(8 / 12)
    assert mask_iou(cols(0, 1), cols(2, 3)) == 0.0
    assert mask_iou(cols(0, 1).astype(np.int64), cols(0, 1).astype(np.float32)) == 1.0  # non-zero = inside
    assert mask_iou(EMPTY, cols(0, 1)) == 0.0  # empty prediction
    assert mask_iou(cols(0, 1), EMPTY) == 0.0  # prediction on an empty target
    assert mask_iou(EMPTY, EMPTY) == 1.0  # nothing predicted for nothing


def test_mask_iou_rejects_bad_masks():
    with pytest.raises(ValueError, match="target_mask has 3 values"):
        mask_iou(np.ones(4, bool), np.ones(3, bool))
    with pytest.raises(ValueError, match="pred_mask must be a 1-D mask"):
        mask_iou(np.ones((2, 2), bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="pred_mask must be boolean or numeric"):
        mask_iou(np.array(["a", "b"]), np.ones(2, bool))


def test_miou_is_the_mean_of_per_expression_ious_not_pooled():
    # a small target found exactly (IoU 1) and a large target missed (IoU 0): per-expression
    # mean = 0.5, whereas pooling intersections and unions would give 8 / (8 + 80) ~ 0.09
    preds = [cols(0, 1), EMPTY]
    targets = [cols(0, 1), cols(5, 24)]
    assert mean_mask_iou(preds, targets) == pytest.approx(0.5)
    assert math.isnan(mean_mask_iou([], []))
    with pytest.raises(ValueError, match="pred_masks has 1 entries but target_masks has 2"):
        mean_mask_iou([EMPTY], targets)


def test_scanrefer_segmentation_mask_miou_box_accuracy_and_split():
    queries = [
        SegReferQuery(POINTS, cols(0, 2), cols(0, 2), unique=True),  # mask 1, box 1
        SegReferQuery(POINTS, cols(0, 2), cols(0, 1), unique=False),  # mask 8/12, box 1/2 (counts at 0.5)
        SegReferQuery(POINTS, cols(0, 4), cols(0, 1), unique=False),  # mask 8/20, box 1/4 (counts at 0.25 only)
        SegReferQuery(POINTS, EMPTY, cols(0, 1), unique=True),  # no prediction: mask 0, box 0
    ]
    out = scanrefer_segmentation(queries)
    overall = out["overall"]
    assert overall["miou"] == pytest.approx((1 + 8 / 12 + 8 / 20 + 0) / 4)
    assert overall["acc@0.25"] == pytest.approx(3 / 4) and overall["acc@0.5"] == pytest.approx(2 / 4)
    assert overall["box_miou"] == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)
    assert overall["n"] == 4
    assert out["unique"] == pytest.approx({"miou": 0.5, "acc@0.25": 0.5, "acc@0.5": 0.5, "box_miou": 0.5, "n": 2})
    assert out["multiple"]["miou"] == pytest.approx((8 / 12 + 8 / 20) / 2)
    assert out["multiple"]["acc@0.25"] == 1.0 and out["multiple"]["acc@0.5"] == 0.5


def test_scanrefer_segmentation_without_split_and_bad_inputs():
    out = scanrefer_segmentation([SegReferQuery(POINTS, cols(3, 4), cols(3, 4))])
    assert out["overall"]["miou"] == 1.0 and out["unique"]["n"] == 0 and math.isnan(out["unique"]["miou"])
    with pytest.raises(ValueError, match="target_mask is empty"):
        SegReferQuery(POINTS, cols(0, 1), EMPTY)
    with pytest.raises(ValueError, match="pred_mask has 5 values"):
        SegReferQuery(POINTS, np.ones(5, bool), cols(0, 1))
    with pytest.raises(ValueError, match=r"points must have shape \[P, 3\]"):
        SegReferQuery(POINTS[:, :2], cols(0, 1), cols(0, 1))
    with pytest.raises(ValueError, match="thresholds"):
        scanrefer_segmentation([], thresholds=(0.0,))
    with pytest.raises(ValueError, match=r"queries\[0\] must be a SegReferQuery"):
        scanrefer_segmentation([object()])


def test_union_iou_multiple_and_zero_targets():
    # two targets x in [0, 1] and [4, 5]; one prediction covering x in [0, 5]: 16 / 24
    targets = np.stack([cols(0, 1), cols(4, 5)])
    assert union_iou(cols(0, 5)[None], targets, P) == pytest.approx(16 / 24)
    assert union_iou(targets, targets, P) == 1.0
    assert union_iou(np.zeros((0, P), bool), targets, P) == 0.0  # nothing predicted
    assert union_iou([], [], P) == 1.0  # zero target, nothing predicted
    assert union_iou([EMPTY, EMPTY], [], P) == 1.0  # empty masks are no prediction
    assert union_iou([cols(0, 0)], [], P) == 0.0  # zero target, something predicted
    with pytest.raises(ValueError, match=r"target_masks must be masks of shape \[k, 124\]"):
        union_iou([], np.ones((2, 3), bool), P)


def test_multi3drefer_hungarian_pairing_not_greedy():
    # boxes (x intervals): GT1 [6, 26], GT2 [10, 30]; P1 [7, 27], P2 [0, 20].
    # IoU P1-GT1 19/21, P1-GT2 17/23, P2-GT1 14/26, P2-GT2 10/30. Greedy (best pair first) takes
    # P1-GT1 and leaves P2-GT2 = 1/3 < 0.5 (F1@0.5 = 0.5); the Hungarian assignment maximises
    # the total IoU (P1-GT2 + P2-GT1 = 1.277 > 1.238) and both pairs reach 0.5: F1@0.5 = 1.
    q = MultiSegReferQuery(POINTS, np.stack([cols(7, 27), cols(0, 20)]), np.stack([cols(6, 26), cols(10, 30)]))
    out = multi3drefer_segmentation([q])
    assert out["mt"]["f1@0.5"] == 1.0 and out["mt"]["f1@0.25"] == 1.0
    # unions: prediction x in [0, 27] (28 columns), targets x in [6, 30] (25): 22 / 31
    assert out["mt"]["miou"] == pytest.approx(22 / 31)


def test_multi3drefer_groups_zero_targets_and_empty_predictions():
    none = np.zeros((0, P), bool)
    qs = [
        MultiSegReferQuery(POINTS, none, none),  # zt_wo_d, nothing predicted: F1 1, IoU 1
        MultiSegReferQuery(POINTS, cols(0, 1)[None], none, has_distractor=True),  # zt_w_d, predicted: 0, 0
        MultiSegReferQuery(POINTS, np.stack([EMPTY, cols(2, 3)]), cols(2, 3)[None]),  # st_wo_d: empty row dropped -> 1, 1
        # mt: one of three targets found, one extra far away: TP = 1, F1 = 2 / (2 + 3); IoU 8 / (8 + 24 + 8)
        MultiSegReferQuery(POINTS, np.stack([cols(0, 1), cols(20, 21)]),
                           np.stack([cols(0, 1), cols(5, 6), cols(10, 13)]), has_distractor=True),
        MultiSegReferQuery(POINTS, none, cols(0, 1)[None], has_distractor=True),  # st_w_d, missed: 0, 0
    ]
    out = multi3drefer_segmentation(qs)
    assert out["zt_wo_d"] == {"miou": 1.0, "f1@0.25": 1.0, "f1@0.5": 1.0, "n": 1}
    assert out["zt_w_d"] == {"miou": 0.0, "f1@0.25": 0.0, "f1@0.5": 0.0, "n": 1}
    assert out["st_wo_d"] == {"miou": 1.0, "f1@0.25": 1.0, "f1@0.5": 1.0, "n": 1}
    assert out["mt"]["f1@0.5"] == pytest.approx(0.4) and out["mt"]["miou"] == pytest.approx(8 / 40)
    assert out["st_w_d"]["miou"] == 0.0 and out["st_w_d"]["f1@0.25"] == 0.0
    assert out["overall"]["n"] == 5
    assert out["overall"]["miou"] == pytest.approx((1 + 0 + 1 + 0.2 + 0) / 5)
    assert out["overall"]["f1@0.25"] == pytest.approx((1 + 0 + 1 + 0.4 + 0) / 5)
    empty = multi3drefer_segmentation([])
    assert empty["overall"]["n"] == 0 and math.isnan(empty["overall"]["miou"])


def test_multi3drefer_query_rejects_bad_masks():
    with pytest.raises(ValueError, match="target_masks holds an empty mask"):
        MultiSegReferQuery(POINTS, np.zeros((0, P), bool), np.stack([cols(0, 1), EMPTY]))
    with pytest.raises(ValueError, match=r"pred_masks must be masks of shape \[k, 124\]"):
        MultiSegReferQuery(POINTS, np.ones((1, 5), bool), cols(0, 1)[None])
    with pytest.raises(ValueError, match=r"queries\[0\] must be a MultiSegReferQuery"):
        multi3drefer_segmentation([SegReferQuery(POINTS, cols(0, 1), cols(0, 1))])
