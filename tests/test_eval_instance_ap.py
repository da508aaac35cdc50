"""Instance AP: hand-computed cases and the ScanNet protocol's corner cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liftgs.eval.instance_ap import (
    OVERLAPS,
    ClassSet,
    InstancePrediction,
    average_precision,
    evaluate_instances,
    precision_recall,
)
from liftgs.eval.scannet200 import (
    COMMON_CATS_SCANNET200,
    HEAD_CATS_SCANNET200,
    SCANNET200_INSTANCE_IDS,
    SCANNET200_LABELS,
    TAIL_CATS_SCANNET200,
)

P = 1000
CLASSES = ClassSet.from_names(["chair", "table", "lamp"])


def span(a: int, b: int) -> np.ndarray:
    m = np.zeros(P, dtype=bool)
    m[a:b] = True
    return m


def pred(a: int, b: int, label: int, score: float) -> InstancePrediction:
    return InstancePrediction(span(a, b), label, score)


def gt_ids(*objects: tuple[int, int, int]) -> np.ndarray:
    """objects: (start, end, gt id) with gt id = label*1000+instance."""
    g = np.zeros(P, dtype=np.int64)
    for a, b, i in objects:
        g[a:b] = i
    return g


def ap_of(gt, preds, classes=CLASSES):
    return evaluate_instances([(gt, preds)], classes)


def test_overlaps_are_the_scripts():
    assert len(OVERLAPS) == 10
    assert np.allclose(OVERLAPS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.25])


def test_perfect_predictions_give_ap_one_and_empty_classes_nan():
    gt = gt_ids((0, 200, 1001), (200, 400, 1002), (400, 600, 2001))
    r = ap_of(gt, [pred(0, 200, 1, 0.9), pred(200, 400, 1, 0.3), pred(400, 600, 2, 0.5)])
    pc = r.per_class()
    assert pc["chair"] == {"ap": 1.0, "ap50": 1.0, "ap25": 1.0}
    assert pc["table"]["ap"] == 1.0
    assert all(math.isnan(v) for v in pc["lamp"].values())  # no GT lamp -> NaN
    assert r.summary() == {"ap": 1.0, "ap50": 1.0, "ap25": 1.0}  # NaN excluded from the means


def test_hand_computed_pr_curve():
    # chair GT A, B; predictions: A (0.9, TP), a chair on the table's points (0.8, FP), B (0.7, TP)
    gt = gt_ids((0, 200, 1001), (200, 400, 1002), (400, 600, 2001))
    preds = [pred(0, 200, 1, 0.9), pred(400, 600, 1, 0.8), pred(200, 400, 1, 0.7)]
    precision, recall = precision_recall(np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.8, 0.7]), 0)
    assert np.allclose(precision, [2 / 3, 1 / 2, 1.0, 1.0])
    assert np.allclose(recall, [1.0, 0.5, 0.5, 0.0])
    # step widths 0.25 each: AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24
    assert average_precision(precision, recall) == pytest.approx(19 / 24)
    r = ap_of(gt, preds)
    assert np.allclose(r.ap[0], 19 / 24)
    assert r.per_class()["table"]["ap"] == 0.0  # GT but no table prediction -> 0, not NaN


def test_hard_false_negative_lowers_recall():
    gt = gt_ids((0, 200, 1001), (200, 400, 1002))
    r = ap_of(gt, [pred(0, 200, 1, 0.9)])
    # curve: (P=1, R=0.5) then (1, 0): widths 0.25 + 0.25 -> AP 0.5
    assert r.per_class()["chair"]["ap"] == pytest.approx(0.5)


def test_gt_matched_twice_second_is_false_positive():
    gt = gt_ids((0, 200, 1001))
    # both overlap GT with IoU 0.9; lower score (0.6) becomes FP, the GT keeps score 0.8
    preds = [pred(0, 180, 1, 0.6), pred(20, 200, 1, 0.8)]
    r = ap_of(gt, preds)
    # y: TP@0.8, FP@0.6 -> P=[1/2, 1, 1], R=[1, 1, 0]; widths [0, .5, .5] -> AP 1.0 at IoU<0.9
    assert r.ap[0, 0] == pytest.approx(1.0)
    precision, recall = precision_recall(np.array([1.0, 0.0]), np.array([0.8, 0.6]), 0)
    assert np.allclose(precision, [0.5, 1.0, 1.0]) and np.allclose(recall, [1.0, 1.0, 0.0])
    # reversed file order: the GT keeps the max score, the FP gets the min
    r2 = ap_of(gt, [pred(0, 180, 1, 0.8), pred(20, 200, 1, 0.6)])
    assert r2.ap[0, 0] == pytest.approx(1.0)
    # at 0.9 neither matches (IoU = 0.9 is not > 0.9): both are plain FPs, GT a hard FN
    assert r.ap[0, list(np.isclose(OVERLAPS, 0.9)).index(True)] == 0.0


def test_double_match_fp_with_a_higher_scored_real_fp_in_between():
    gt = gt_ids((0, 200, 1001), (300, 500, 2001))
    preds = [pred(0, 200, 1, 0.9), pred(0, 190, 1, 0.5), pred(300, 500, 1, 0.7)]  # chair on the table
    r = ap_of(gt, preds)
    # chair: TP 0.9, FP 0.7, FP 0.5 (double match); asc: .5F .7F .9T
    # P = [1/3, 1/2, 1, 1], R = [1, 1, 1, 0]; widths [0, 0, .5, .5] -> AP = 1.0
    assert r.ap[0, 0] == pytest.approx(1.0)
    # now put the FP above the TP
    r = ap_of(gt, [pred(0, 200, 1, 0.6), pred(0, 190, 1, 0.5), pred(300, 500, 1, 0.7)])
    # asc: .5F .6T .7F -> P=[1/3, 1/2, 0, 1], R=[1, 1, 0, 0]; widths [0, .5, .5, 0] -> 0.25
    assert r.ap[0, 0] == pytest.approx(0.25)


def test_iou_exactly_at_threshold_does_not_match():
    gt = gt_ids((0, 200, 1001))
    r = ap_of(gt, [pred(0, 100, 1, 0.9)])  # IoU = 100/200 = 0.5 exactly
    o50 = list(np.isclose(OVERLAPS, 0.5)).index(True)
    o25 = list(np.isclose(OVERLAPS, 0.25)).index(True)
    assert r.ap[0, o50] == 0.0
    assert r.ap[0, o25] == pytest.approx(1.0)


def test_predictions_on_void_are_ignored():
    gt = gt_ids((0, 200, 1001))  # points 200.. are unannotated (void)
    fp_on_void = pred(300, 500, 1, 0.95)
    r = ap_of(gt, [pred(0, 200, 1, 0.9), fp_on_void])
    assert r.per_class()["chair"]["ap"] == pytest.approx(1.0)
    # a non-evaluated class counts as void too (label 9 is not in CLASSES)
    gt2 = gt_ids((0, 200, 1001), (300, 500, 9001))
    assert ap_of(gt2, [pred(0, 200, 1, 0.9), fp_on_void]).per_class()["chair"]["ap"] == pytest.approx(1.0)
    # half on void, half on a table: ignored only where the void share exceeds the threshold
    r = ap_of(gt_ids((0, 200, 1001), (400, 500, 2001)), [pred(0, 200, 1, 0.9), pred(300, 500, 1, 0.95)])
    o50 = list(np.isclose(OVERLAPS, 0.5)).index(True)
    o25 = list(np.isclose(OVERLAPS, 0.25)).index(True)
    assert r.ap[0, o50] == pytest.approx(0.25)  # void share 0.5 <= 0.5 -> counted as FP (above the TP)
    assert r.ap[0, o25] == pytest.approx(1.0)  # 0.5 > 0.25 -> ignored
    r = ap_of(gt_ids((0, 200, 1001), (410, 500, 2001)), [pred(0, 200, 1, 0.9), pred(300, 500, 1, 0.95)])
    assert r.ap[0, o50] == pytest.approx(1.0)  # 110/200 = 0.55 > 0.5 -> ignored


def test_small_gt_is_not_evaluated_and_predictions_on_it_are_ignored():
    o25 = list(np.isclose(OVERLAPS, 0.25)).index(True)
    o50 = list(np.isclose(OVERLAPS, 0.5)).index(True)
    # chair A, a 50-point chair (too small) and a table
    gt = gt_ids((0, 200, 1001), (300, 350, 1002), (350, 500, 2001))
    # 110 points: 50 on the small chair, 60 on the table; IoU with the small chair = 50/110
    r = ap_of(gt, [pred(0, 200, 1, 0.9), pred(300, 410, 1, 0.95)])
    assert r.ap[0, o50] == pytest.approx(0.25)  # no match, ignore share 0.45 <= 0.5 -> FP above the TP
    assert r.ap[0, o25] == pytest.approx(1.0)  # 0.45 > 0.25 "matches" the small GT: neither TP nor FP
    # 50 points on the small chair + 50 on void: ignore share 1.0 -> ignored at every threshold
    r = ap_of(gt_ids((0, 200, 1001), (300, 350, 1002)), [pred(0, 200, 1, 0.9), pred(300, 400, 1, 0.95)])
    assert r.per_class()["chair"]["ap"] == pytest.approx(1.0)
    # a prediction of 50 points is dropped before matching (< 100 points)
    r = ap_of(gt, [pred(0, 200, 1, 0.9), pred(300, 350, 1, 0.95)])
    assert r.per_class()["chair"]["ap"] == pytest.approx(1.0)
    # a class whose only GT is too small has no GT -> NaN
    r = ap_of(gt_ids((300, 350, 2001)), [pred(0, 200, 2, 0.9)])
    assert math.isnan(r.per_class()["table"]["ap"])


def test_small_predictions_and_unknown_labels_are_dropped():
    gt = gt_ids((0, 200, 1001))
    r = ap_of(gt, [pred(0, 200, 1, 0.9), pred(0, 99, 1, 0.99), pred(0, 200, 7, 0.99)])
    assert r.per_class()["chair"]["ap"] == pytest.approx(1.0)


def test_empty_predictions_give_zero_and_no_gt_gives_nan():
    gt = gt_ids((0, 200, 1001))
    r = ap_of(gt, [])
    assert r.per_class()["chair"]["ap"] == 0.0
    assert math.isnan(r.per_class()["table"]["ap"])
    assert r.summary()["ap"] == 0.0
    # no GT anywhere: every class NaN, means NaN (no warning escapes)
    r = ap_of(np.zeros(P, dtype=np.int64), [pred(0, 200, 1, 0.9)])
    assert math.isnan(r.summary()["ap"])


def test_all_predictions_ignored_gives_zero():
    # has_gt and has_pred, but the only prediction lies on void: ScanNet PR #26 case -> AP 0
    r = ap_of(gt_ids((0, 200, 1001)), [pred(500, 700, 1, 0.9)])
    assert r.per_class()["chair"]["ap"] == 0.0


def test_greedy_matching_across_scenes_and_pooling():
    g1 = gt_ids((0, 200, 1001))
    g2 = gt_ids((0, 200, 1001), (200, 400, 1002))
    r = evaluate_instances([(g1, [pred(0, 200, 1, 0.9)]), (g2, [pred(0, 200, 1, 0.8)])], CLASSES)
    # TPs 0.9, 0.8 and one hard FN: P=[1, 1, 1], R=[2/3, 1/3, 0]; widths [1/6, 1/3, 1/6]... -> 2/3
    assert r.per_class()["chair"]["ap"] == pytest.approx(2 / 3)


def test_wrong_mask_length_is_a_clear_error():
    with pytest.raises(ValueError, match="vertices"):
        ap_of(gt_ids((0, 200, 1001)), [InstancePrediction(np.ones(10, bool), 1, 0.5, name="m.txt")])


def test_scannet200_constants_and_groups():
    assert len(SCANNET200_LABELS) == 200 and len(SCANNET200_INSTANCE_IDS) == 198
    assert (len(HEAD_CATS_SCANNET200), len(COMMON_CATS_SCANNET200), len(TAIL_CATS_SCANNET200)) == (66, 68, 66)
    cs = ClassSet.scannet200()
    assert "wall" not in cs.names and "floor" not in cs.names
    assert set(cs.names) <= set(HEAD_CATS_SCANNET200) | set(COMMON_CATS_SCANNET200) | set(TAIL_CATS_SCANNET200)
    assert ClassSet.scannet20().ids[:3] == (3, 4, 5)
    chair, cup = cs.ids[cs.names.index("chair")], cs.ids[cs.names.index("cup")]
    gt = gt_ids((0, 200, chair * 1000 + 1), (200, 400, cup * 1000 + 1))
    s = evaluate_instances([(gt, [pred(0, 200, chair, 0.9)])], cs).summary()
    assert s["head_ap"] == pytest.approx(1.0) and s["tail_ap"] == 0.0 and math.isnan(s["common_ap"])
    assert s["ap"] == pytest.approx(0.5)


def test_class_set_validation():
    with pytest.raises(ValueError, match=">= 1"):
        ClassSet(ids=(0,), names=("x",))
    with pytest.raises(ValueError, match="one name per id"):
        ClassSet(ids=(1, 2), names=("x",))


def test_scannet_objects_are_labelled_by_their_mapped_ids():
    """Converted with ScanNet's label map, an object carries the tsv id (ScanNet200) and its NYU40
    id (ScanNet v2): the benchmarks label it by those, whatever its raw category; without them,
    by name."""
    from liftgs.eval.open_vocab import object_labels
    from liftgs.types import ObjectInfo, Scene

    objects = {0: ObjectInfo("kitchen cabinet", {"label_id": 29, "nyu40_id": 3}),  # raw name, mapped ids
               1: ObjectInfo("chair", {"label_id": 2, "nyu40_id": 5}),
               2: ObjectInfo("wall", {"label_id": 1, "nyu40_id": 1}),  # not an instance class of v2
               3: ObjectInfo("chair")}  # no label map: by name
    scene = Scene("s", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32), [],
                  np.arange(4, dtype=np.int32), objects)
    s200, s20 = ClassSet.scannet200(), ClassSet.scannet20()
    assert s200.name_of(29) == "kitchen cabinet" and s20.name_of(3) == "cabinet"
    assert object_labels(scene, s200) == {0: 29, 1: 2, 3: 2}
    assert object_labels(scene, s20) == {0: 3, 1: 5, 3: 5}
    assert object_labels(scene, ClassSet.from_names(["chair", "kitchen cabinet"])) == {0: 2, 1: 1, 3: 1}
