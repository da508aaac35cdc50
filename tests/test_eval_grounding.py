"""Acc@IoU (ScanRefer) and F1@IoU (Multi3DRefer) on hand-computed boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liftgs.eval.grounding import (
    MultiReferQuery,
    ReferQuery,
    box_iou_matrix,
    f1_one_query,
    grounding_accuracy,
    is_unique_target,
    mask_box,
    multi3drefer_f1,
    multi3drefer_type,
)
from liftgs.geometry import box_iou

UNIT = np.array([0, 0, 0, 1, 1, 1.0])


def shifted(dx: float) -> np.ndarray:
    return UNIT + np.array([dx, 0, 0, dx, 0, 0])


def test_mask_box_and_iou_matrix_agree_with_geometry():
    pts = np.array([[0, 0, 0], [1, 2, 3], [5, 5, 5.0]])
    assert mask_box(pts, np.array([1, 1, 0])).tolist() == [0, 0, 0, 1, 2, 3]
    assert mask_box(pts, np.zeros(3, bool)) is None
    rng = np.random.default_rng(0)
    lo = rng.random((5, 3))
    a = np.concatenate([lo, lo + rng.random((5, 3))], 1)
    lo = rng.random((4, 3))
    b = np.concatenate([lo, lo + rng.random((4, 3))], 1)
    m = box_iou_matrix(a, b)
    assert m.shape == (5, 4)
    assert all(m[i, j] == pytest.approx(box_iou(a[i], b[j])) for i in range(5) for j in range(4))


def test_accuracy_thresholds_are_inclusive_and_split_unique_multiple():
    # a box [0, s] x [0, 1] x [0, 1] inside the unit box has IoU s (exact in binary for 1/2, 1/4)
    queries = [
        ReferQuery(UNIT.copy(), UNIT, unique=True),  # IoU 1
        ReferQuery(np.array([0, 0, 0, 0.5, 1, 1]), UNIT, unique=False),  # IoU 0.5 exactly -> counts at 0.5
        ReferQuery(np.array([0, 0, 0, 0.25, 1, 1]), UNIT, unique=False),  # IoU 0.25 -> counts at 0.25 only
        ReferQuery(None, UNIT, unique=True),  # no prediction -> IoU 0
    ]
    assert queries[1].iou() == 0.5 and queries[2].iou() == 0.25
    acc = grounding_accuracy(queries)
    assert acc["overall"]["acc@0.25"] == pytest.approx(3 / 4)
    assert acc["overall"]["acc@0.5"] == pytest.approx(2 / 4)
    assert acc["overall"]["acc@0.75"] == pytest.approx(1 / 4)  # only the exact box
    assert acc["unique"] == pytest.approx({"acc@0.25": 0.5, "acc@0.5": 0.5, "acc@0.75": 0.5, "miou": 0.5, "n": 2})
    assert acc["multiple"]["acc@0.25"] == 1.0 and acc["multiple"]["acc@0.5"] == 0.5
    assert acc["multiple"]["acc@0.75"] == 0.0
    assert acc["multiple"]["n"] == 2


def test_accuracy_of_empty_subset_is_nan():
    acc = grounding_accuracy([ReferQuery(UNIT, UNIT)])
    assert acc["overall"]["acc@0.5"] == 1.0 and acc["unique"]["n"] == 0 and math.isnan(acc["unique"]["acc@0.5"])


def test_is_unique_target():
    cats = {0: "chair", 1: "chair", 2: "table"}
    assert is_unique_target(cats, 2) and not is_unique_target(cats, 0)


def test_f1_hand_computed():
    gts = np.stack([UNIT, shifted(5)])
    # perfect
    assert f1_one_query(gts, gts) == {0.25: 1.0, 0.5: 1.0}
    # one right, one IoU 0.4 (dx = 3/7), one extra far away: TP@0.25 = 2, TP@0.5 = 1; F1 = 2TP/(3+2)
    preds = np.stack([UNIT, shifted(5 + 3 / 7), shifted(20)])
    assert f1_one_query(preds, gts) == pytest.approx({0.25: 4 / 5, 0.5: 2 / 5})
    # Hungarian, not greedy: the best total pairs each prediction with a different target
    # (greedy would pair the best-overlapping couple first and leave the other below 0.5)
    preds = np.stack([shifted(0.05), shifted(-0.3)])
    gts2 = np.stack([UNIT, shifted(0.2)])
    assert f1_one_query(preds, gts2)[0.5] == 1.0
    # nothing predicted for a real target
    assert f1_one_query(np.zeros((0, 6)), gts) == {0.25: 0.0, 0.5: 0.0}


def test_zero_target_queries_score_one_only_without_prediction():
    assert f1_one_query(np.zeros((0, 6)), np.zeros((0, 6))) == {0.25: 1.0, 0.5: 1.0}
    assert f1_one_query(UNIT[None], np.zeros((0, 6))) == {0.25: 0.0, 0.5: 0.0}


def test_multi3drefer_f1_groups():
    qs = [
        MultiReferQuery(np.zeros((0, 6)), np.zeros((0, 6))),  # zt_wo_d: 1
        MultiReferQuery(UNIT[None], np.zeros((0, 6)), has_distractor=True),  # zt_w_d: 0
        MultiReferQuery(UNIT[None], UNIT[None]),  # st_wo_d: 1
        MultiReferQuery(np.stack([UNIT, shifted(3)]), np.stack([UNIT, shifted(3), shifted(6)]),
                        has_distractor=True),  # mt: 2*2/5
    ]
    assert [multi3drefer_type(len(q.gt_boxes), q.has_distractor) for q in qs] == ["zt_wo_d", "zt_w_d", "st_wo_d", "mt"]
    out = multi3drefer_f1(qs)
    assert out["overall"]["f1@0.5"] == pytest.approx((1 + 0 + 1 + 0.8) / 4)
    assert out["mt"]["f1@0.25"] == pytest.approx(0.8) and out["zt_w_d"]["f1@0.5"] == 0.0
    assert math.isnan(out["st_w_d"]["f1@0.5"]) and out["st_w_d"]["n"] == 0
