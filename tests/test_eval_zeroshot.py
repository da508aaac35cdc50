"""Zero-shot caption grounding and its random-object baseline on rooms scored by hand.

Every box below is built from a handful of points whose extremes are the box corners, so
each IoU is a small fraction one can check on paper:

room A: object 0 = [0,1]^3, object 1 = [0.5,1.5]x[0,1]x[0,1] (IoU with 0: 0.5 / 1.5 = 1/3),
        object 2 = [3,4]x[3,4]x[0,1] (no overlap), object 3 has too few points (not queried).
room B: object 5 = [0,2]x[0,1]x[0,1], object 7 = [1,2]x[0,1]x[0,1] (IoU 1 / 2 = 0.5 exactly).
"""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.eval.grounding import ReferQuery, grounding_accuracy, mask_box
from liftgs.eval.zeroshot import caption_queries, random_object_accuracy, zero_shot_caption_accuracy
from liftgs.geometry import box_iou
from liftgs.types import ObjectInfo, Scene

MIN_POINTS = 9


def _box_points(lo, hi) -> np.ndarray:
    """The 8 corners of box [lo, hi] plus its centre: 9 points whose box is exactly [lo, hi]."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return np.vstack([corners, (lo + hi) / 2])


def _scene(scene_id: str, boxes: dict[int, tuple], objects: dict[int, ObjectInfo],
           extra: dict[int, np.ndarray] | None = None) -> Scene:
    pts, ids = [], []
    for oid, (lo, hi) in boxes.items():
        p = _box_points(lo, hi)
        pts.append(p)
        ids.append(np.full(len(p), oid))
    for oid, p in (extra or {}).items():
        pts.append(p)
        ids.append(np.full(len(p), oid))
    pts.append(np.array([[9.0, 9.0, 9.0], [-5.0, -5.0, 0.0]]))  # unlabelled points
    ids.append(np.full(2, -1))
    points = np.vstack(pts)
    return Scene(scene_id, points, np.zeros_like(points), instance_ids=np.concatenate(ids),
                 objects=objects)


@pytest.fixture
def rooms() -> list[Scene]:
    room_a = _scene(
        "roomA",
        {0: ((0, 0, 0), (1, 1, 1)), 1: ((0.5, 0, 0), (1.5, 1, 1)), 2: ((3, 3, 0), (4, 4, 1))},
        {0: ObjectInfo("chair", {"caption": "a red chair"}), 1: ObjectInfo("table"),
         2: ObjectInfo("lamp", {"caption": "a tall lamp"}), 3: ObjectInfo("cup")},
        extra={3: np.array([[5.0, 5, 0], [5.2, 5, 0.1], [5, 5.3, 0], [5.1, 5.1, 0.2]])},
    )
    room_b = _scene("roomB", {5: ((0, 0, 0), (2, 1, 1)), 7: ((1, 0, 0), (2, 1, 1))},
                    {5: ObjectInfo("bed", {"caption": "the big bed"}), 7: ObjectInfo("pillow")})
    room_c = _scene("roomC", {}, {4: ObjectInfo("sofa")})  # no object with points: skipped
    return [room_a, room_b, room_c]


class ScriptedGrounder:
    """Answers each caption with a fixed ranked list of masks (the first one is scored)."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def phrases(self, scene, texts):
        self.asked.append((scene.scene_id, list(texts)))
        out = []
        for text in texts:
            masks = [m(scene) for m in self.answers[(scene.scene_id, text)]]
            stacked = np.stack(masks) if masks else np.zeros((0, scene.num_points), bool)
            out.append((stacked, np.linspace(1.0, 0.5, len(masks))))
        return out


def _object(oid):
    return lambda scene: scene.instance_ids == oid


def _half_of_7(scene):  # object 7's points with x >= 1.5: box [1.5, 2] x [0, 1] x [0, 1]
    return (scene.instance_ids == 7) & (scene.points[:, 0] >= 1.5)


ANSWERS = {
    ("roomA", "a red chair"): [_object(1), _object(0)],  # top = object 1: IoU 1/3
    ("roomA", "table"): [_object(1)],  # exact: IoU 1
    ("roomA", "a tall lamp"): [_object(0), _object(2)],  # top = wrong object: IoU 0
    ("roomB", "the big bed"): [],  # no answer: IoU 0
    ("roomB", "pillow"): [_half_of_7],  # IoU 0.5 / 1 = 0.5 exactly
}


def test_boxes_and_ious_by_hand(rooms):
    a, b = rooms[0], rooms[1]
    box0, box1 = mask_box(a.points, a.instance_ids == 0), mask_box(a.points, a.instance_ids == 1)
    np.testing.assert_array_equal(box0, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(box1, [0.5, 0, 0, 1.5, 1, 1])
    assert box_iou(box0, box1) == pytest.approx(1 / 3, abs=1e-12)
    assert box_iou(box0, mask_box(a.points, a.instance_ids == 2)) == 0.0
    assert box_iou(mask_box(b.points, b.instance_ids == 5), mask_box(b.points, b.instance_ids == 7)) == 0.5
    assert mask_box(a.points, np.zeros(a.num_points, bool)) is None
    assert ReferQuery(None, box0).iou() == 0.0


def test_caption_queries_use_captions_and_skip_small_objects(rooms):
    got = [(q.text, q.target_id) for q in caption_queries(rooms[0], MIN_POINTS)]
    assert got == [("a red chair", 0), ("table", 1), ("a tall lamp", 2)]  # cup: 4 points < 9
    assert [q.target_id for q in caption_queries(rooms[0], 4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="instance ids"):
        caption_queries(Scene("bare", np.zeros((3, 3)), np.zeros((3, 3))))


def test_random_object_baseline_by_hand(rooms):
    a = rooms[0]
    boxes = {i: mask_box(a.points, a.instance_ids == i) for i in (0, 1, 2)}
    # target 0: itself (IoU 1), object 1 (1/3), object 2 (0)
    assert random_object_accuracy(boxes, 0, 0.25) == pytest.approx(2 / 3)
    assert random_object_accuracy(boxes, 0, 0.5) == pytest.approx(1 / 3)
    assert random_object_accuracy(boxes, 2, 0.25) == pytest.approx(1 / 3)
    b = rooms[1]
    boxes = {i: mask_box(b.points, b.instance_ids == i) for i in (5, 7)}
    assert random_object_accuracy(boxes, 7, 0.5) == 1.0  # IoU exactly 0.5 counts


def test_zero_shot_caption_accuracy_by_hand(rooms):
    grounder = ScriptedGrounder(ANSWERS)
    res = zero_shot_caption_accuracy(rooms, grounder, min_points=MIN_POINTS)
    assert grounder.asked == [("roomA", ["a red chair", "table", "a tall lamp"]),
                              ("roomB", ["the big bed", "pillow"])]
    model, rand = res["model"], res["random"]
    # IoUs of the top masks: 1/3, 1, 0, 0 (no answer), 0.5
    assert model["n"] == 5 and rand["n"] == 5
    assert model["acc@0.25"] == pytest.approx(3 / 5, abs=1e-12)  # 1/3, 1, 0.5
    assert model["acc@0.5"] == pytest.approx(2 / 5, abs=1e-12)  # 1, 0.5
    assert model["miou"] == pytest.approx((1 / 3 + 1 + 0.5) / 5, abs=1e-12)
    # random object, per query: room A (2/3, 1/3), (2/3, 1/3), (1/3, 1/3); room B (1, 1) twice
    assert rand["acc@0.25"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5, abs=1e-12)
    assert rand["acc@0.5"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 3 + 1 + 1) / 5, abs=1e-12)


def test_zero_shot_thresholds_and_empty_input(rooms):
    res = zero_shot_caption_accuracy(rooms, ScriptedGrounder(ANSWERS), min_points=MIN_POINTS,
                                     thresholds=(0.3, 0.9))
    assert res["model"]["acc@0.3"] == pytest.approx(3 / 5)  # 1/3 >= 0.3
    assert res["model"]["acc@0.9"] == pytest.approx(1 / 5)
    assert res["random"]["acc@0.3"] == pytest.approx(11 / 15)
    assert res["random"]["acc@0.9"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 3 + 1 / 2 + 1 / 2) / 5)
    empty = zero_shot_caption_accuracy(rooms[2:], ScriptedGrounder({}), min_points=MIN_POINTS)
    assert empty["model"]["n"] == 0 and empty["random"]["n"] == 0
    assert np.isnan(empty["model"]["acc@0.25"]) and np.isnan(empty["random"]["acc@0.5"])


def test_grounding_accuracy_unique_split_by_hand():
    box = np.array([0, 0, 0, 1, 1, 1.0])
    half = np.array([0, 0, 0, 0.5, 1, 1.0])  # IoU 0.5 with box
    quarter = np.array([0, 0, 0, 0.25, 1, 1.0])  # IoU 0.25
    qs = [ReferQuery(box, box, True), ReferQuery(half, box, False), ReferQuery(quarter, box, False),
          ReferQuery(None, box, None)]
    res = grounding_accuracy(qs)
    assert res["overall"] == pytest.approx({"acc@0.25": 3 / 4, "acc@0.5": 2 / 4, "acc@0.75": 1 / 4,
                                            "miou": 1.75 / 4, "n": 4})
    assert res["unique"] == pytest.approx({"acc@0.25": 1.0, "acc@0.5": 1.0, "acc@0.75": 1.0, "miou": 1.0, "n": 1})
    assert res["multiple"] == pytest.approx({"acc@0.25": 1.0, "acc@0.5": 0.5, "acc@0.75": 0.0, "miou": 0.375, "n": 2})
