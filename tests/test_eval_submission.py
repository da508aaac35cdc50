"""Grounding predictions in the ScanRefer, ReferIt3D and Multi3DRefer submission formats, written
by ``liftgs eval --write-submission`` for tiny fabricated scenes with a scripted grounder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liftgs.eval.cli import EvalConfig, run_checkpoint
from liftgs.eval.submission import (
    Submission,
    check_submission_scenes,
    choose_object,
    m3drefer_corners,
    scanrefer_corners,
)
from liftgs.io import write_scene, write_splits
from liftgs.io.errors import DataError
from liftgs.types import Expression, ObjectInfo, Scene

# object id -> (category, NYU40 class, box corner)
LAYOUT = {0: ("chair", "chair", (0.0, 0.0)), 1: ("chair", "chair", (1.0, 0.0)), 2: ("lamp", "lamp", (2.0, 1.0)),
          3: ("table", "table", (0.0, 2.0))}
FLOOR = 40


def _alignment(source: str) -> dict:
    if source == "axis-align":
        return {"rotation": np.eye(3).tolist(), "translation": [0.0, 0.0, 0.0], "source": "axis-align",
                "file": "x.txt"}
    a = np.deg2rad(8.0)  # a floor levelling: a tilt about x and a shift
    R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return {"rotation": R.tolist(), "translation": [0.5, -1.0, 0.2], "source": "floor-plane"}


def make_scene(scene_id: str, alignment: str, expressions: list[Expression], seed: int = 0) -> Scene:
    """150 points per object in a 0.4 m cube, then FLOOR unannotated points."""
    rng = np.random.default_rng(seed)
    pts, ids = [], []
    for oid, (_, _, (x, y)) in LAYOUT.items():
        pts.append(rng.random((150, 3)) * 0.4 + [x, y, 0.0])
        ids.append(np.full(150, oid))
    pts.append(np.c_[rng.random((FLOOR, 2)) * 3, np.zeros(FLOOR)])
    ids.append(np.full(FLOOR, -1))
    points = np.concatenate(pts).astype(np.float32)
    objects = {oid: ObjectInfo(cat, {"raw_category": cat, "nyu40_class": nyu})
               for oid, (cat, nyu, _) in LAYOUT.items()}
    return Scene(scene_id=scene_id, points=points, colors=np.full_like(points, 0.5),
                 instance_ids=np.concatenate(ids).astype(np.int32), objects=objects, expressions=expressions,
                 meta={"source": "scannet", "alignment": _alignment(alignment)})


def expressions() -> list[Expression]:
    return [
        Expression("the lamp", [2], source="scanrefer", ann_id="2_0", meta={"eval_type": "unique"}),
        Expression("the chair by the wall", [0], source="scanrefer", ann_id="0_3", meta={"eval_type": "multiple"}),
        Expression("the chair closest to the lamp", [1], source="sr3d", ann_id="sr3d-2",
                   meta={"stimulus_id": "scene0001_00-chair-2-1-0"}),
        Expression("the table in the corner", [3], source="nr3d", ann_id="A17",
                   meta={"stimulus_id": "scene0001_00-table-1-3"}),
        Expression("all the chairs", [0, 1], source="multi3drefer", ann_id="0_5", meta={"eval_type": "mt"}),
        Expression("the piano", [], source="multi3drefer", ann_id="7", meta={"eval_type": "zt_wo_d"}),
        Expression("the table", [3], source="synthetic", ann_id="s0"),
    ]


class ScriptedGrounder:
    """Per expression text: a fixed list of (mask, score), best first."""

    def expressions(self, scene, exprs):
        ids = scene.instance_ids
        floor = np.flatnonzero(ids == -1)
        out = []
        for e in exprs:
            if e.text == "the chair by the wall":
                ranked = []  # nothing found
            elif e.text == "the chair closest to the lamp":
                wrong = ids == 0
                wrong[floor[:10]] = True  # object 0 plus ten floor points: IoU 150 / 160
                ranked = [(wrong, 0.9), (ids == 1, 0.6)]
            elif e.text == "all the chairs":
                ranked = [(ids == 0, 0.9), (ids == 1, 0.8), (ids == 3, 0.1)]
            elif e.text == "the piano":
                ranked = [(ids == 2, 0.3)]  # below the 0.5 threshold: "no target"
            else:
                ranked = [(ids == t, 0.9) for t in e.target_ids] + [(ids == -1, 0.2)]
            masks = np.array([m for m, _ in ranked], dtype=bool).reshape(-1, scene.num_points)
            out.append((masks, np.array([s for _, s in ranked], dtype=np.float64)))
        return out

    def phrases(self, scene, phrases):
        raise AssertionError("grounding only")


def box_of(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(0).astype(np.float64), points.max(0).astype(np.float64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    tilted = [Expression("the lamp", [2], source="scanrefer", ann_id="2_1", meta={"eval_type": "unique"})]
    a = write_scene(make_scene("scene0001_00", "axis-align", expressions()), root)
    b = write_scene(make_scene("scene0002_00", "floor-plane", tilted, seed=1), root)
    write_splits(root, {"val": ["scene0001_00", "scene0002_00"]})
    out = tmp_path_factory.mktemp("out")
    cfg = EvalConfig(checkpoint=out / "ckpt", data=root, tasks="grounding", out=out, write_submission=True)
    res = run_checkpoint(cfg, grounder=ScriptedGrounder())
    return {"root": root, "out": out, "res": res, "scenes": {"a": a, "b": b}}


def test_box_corner_orders():
    box = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0])
    assert scanrefer_corners(box).tolist() == [[3, 5, 7], [3, 1, 7], [0, 1, 7], [0, 5, 7],
                                               [3, 5, 2], [3, 1, 2], [0, 1, 2], [0, 5, 2]]
    # ScanRefer's construct_bbox_corners: centre + (+-sx/2, +-sy/2, +-sz/2) in this order
    c, s = (box[:3] + box[3:]) / 2, box[3:] - box[:3]
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * s[0] / 2
    y = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * s[1] / 2
    z = np.array([1, 1, 1, 1, -1, -1, -1, -1]) * s[2] / 2
    np.testing.assert_allclose(scanrefer_corners(box), np.stack([x, y, z], 1) + c)
    assert m3drefer_corners(box).tolist() == [[0, 1, 2], [0, 1, 7], [0, 5, 2], [0, 5, 7],
                                              [3, 1, 2], [3, 1, 7], [3, 5, 2], [3, 5, 7]]


def test_scanrefer_pred_json(run):
    rows = json.loads((run["out"] / "submission" / "scanrefer" / "pred.json").read_text())
    assert [list(r) for r in rows] == [["scene_id", "object_id", "ann_id", "bbox", "unique_multiple", "others"]] * 3
    lamp, chair, tilted = rows
    assert (lamp["scene_id"], lamp["object_id"], lamp["ann_id"]) == ("scene0001_00", "2", "0")
    assert (lamp["unique_multiple"], lamp["others"]) == (0, 1)  # NYU40 "lamp" is none of ScanRefer's 17 classes
    scene = make_scene("scene0001_00", "axis-align", [])
    lo, hi = box_of(scene.points[scene.instance_ids == 2])
    assert np.asarray(lamp["bbox"]).shape == (8, 3)
    np.testing.assert_allclose(lamp["bbox"], [[hi[0], hi[1], hi[2]], [hi[0], lo[1], hi[2]], [lo[0], lo[1], hi[2]],
                                              [lo[0], hi[1], hi[2]], [hi[0], hi[1], lo[2]], [hi[0], lo[1], lo[2]],
                                              [lo[0], lo[1], lo[2]], [lo[0], hi[1], lo[2]]])
    # no prediction: a zero-size box at the origin keeps the query in the benchmark's count
    assert (chair["object_id"], chair["ann_id"], chair["unique_multiple"], chair["others"]) == ("0", "3", 1, 0)
    assert chair["bbox"] == [[0.0, 0.0, 0.0]] * 8


def test_scanrefer_boxes_are_in_the_raw_frame_of_an_unaligned_scan(run):
    """A floor-levelled scan (no axisAlignment): the benchmark's GT boxes are in the raw scan frame."""
    tilted = json.loads((run["out"] / "submission" / "scanrefer" / "pred.json").read_text())[2]
    assert (tilted["scene_id"], tilted["object_id"], tilted["ann_id"]) == ("scene0002_00", "2", "1")
    scene = make_scene("scene0002_00", "floor-plane", [], seed=1)
    al = _alignment("floor-plane")
    R, t = np.array(al["rotation"]), np.array(al["translation"])
    raw = (scene.points[scene.instance_ids == 2].astype(np.float64) - t) @ R  # p = R raw + t
    lo, hi = box_of(raw)
    corners = np.asarray(tilted["bbox"])
    np.testing.assert_allclose(corners[0], hi, atol=1e-6)
    np.testing.assert_allclose(corners[6], lo, atol=1e-6)


def test_multi3drefer_files(run):
    folder = run["out"] / "submission" / "multi3drefer"
    assert sorted(p.name for p in folder.iterdir()) == ["scene0001_00.json"]
    rows = json.loads((folder / "scene0001_00.json").read_text())
    assert [sorted(r) for r in rows] == [["aabb", "ann_id"]] * 2
    chairs, piano = rows
    assert chairs["ann_id"] == 5 and piano == {"ann_id": 7, "aabb": []}
    corners = np.asarray(chairs["aabb"])
    assert corners.shape == (2, 8, 3)  # the table mask scores 0.1 < 0.5: not predicted
    scene = make_scene("scene0001_00", "axis-align", [])
    for c, oid in zip(corners, (0, 1)):
        lo, hi = box_of(scene.points[scene.instance_ids == oid])
        np.testing.assert_allclose(c[0], lo)
        np.testing.assert_allclose(c[1], [lo[0], lo[1], hi[2]])
        np.testing.assert_allclose(c[7], hi)
        # what M3DRef-CLIP's parse_prediction reads back: min / max over the corners
        np.testing.assert_allclose(np.stack([c.min(0), c.max(0)]), [lo, hi])


def test_referit3d_files(run):
    folder = run["out"] / "submission" / "referit3d"
    keys = ["scan_id", "ann_id", "stimulus_id", "utterance", "target_id", "predicted_target_id", "mask_iou",
            "correct"]
    (sr3d,) = json.loads((folder / "sr3d.json").read_text())
    (nr3d,) = json.loads((folder / "nr3d.json").read_text())
    assert list(sr3d) == keys and list(nr3d) == keys
    assert sr3d == {"scan_id": "scene0001_00", "ann_id": "sr3d-2", "stimulus_id": "scene0001_00-chair-2-1-0",
                    "utterance": "the chair closest to the lamp", "target_id": 1, "predicted_target_id": 0,
                    "mask_iou": pytest.approx(150 / 160), "correct": False}
    assert (nr3d["ann_id"], nr3d["target_id"], nr3d["predicted_target_id"], nr3d["mask_iou"], nr3d["correct"]) == \
        ("A17", 3, 3, 1.0, True)


def test_run_records_the_submission_and_skips_other_sources(run):
    info = run["res"].info["submission"]
    assert info["queries"] == {"scanrefer": 3, "sr3d": 1, "nr3d": 1, "multi3drefer": 2}  # "synthetic" not written
    assert sorted(p.name for p in (run["out"] / "submission").iterdir()) == ["multi3drefer", "referit3d", "scanrefer"]
    assert not list(run["out"].glob(".*tmp*"))  # the folder was renamed into place


def test_choose_object():
    ids = np.array([0, 0, 1, 1, -1, 2])
    assert choose_object(ids, [0, 1, 2], np.array([1, 1, 1, 1, 0, 0])) == (0, 0.5)  # tie 0 / 1: the lower id
    assert choose_object(ids, [0, 1, 2], np.array([0, 0, 0, 1, 1, 1])) == (2, 1 / 3)
    assert choose_object(ids, [0, 1, 2], np.array([0, 0, 0, 0, 1, 0])) == (None, 0.0)  # only unannotated points
    assert choose_object(ids, [0, 1], np.zeros(6)) == (None, 0.0)


def test_writing_again_replaces_the_folder(tmp_path):
    scene = make_scene("scene0001_00", "axis-align", expressions()[:1])
    sub = Submission()
    sub.add_scene(scene, scene.expressions, ScriptedGrounder().expressions(scene, scene.expressions))
    stale = tmp_path / "submission" / "multi3drefer" / "scene9999_00.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("[]")
    sub.write(tmp_path / "submission")
    assert not stale.exists() and (tmp_path / "submission" / "scanrefer" / "pred.json").is_file()
    with pytest.raises(ValueError, match="nothing to write"):
        Submission().write(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("expr, message", [
    (Expression("the lamp", [2], source="scanrefer", ann_id="2-0"),
     r"expressions\[0\] \(scanrefer\): field ann_id '2-0' is not ScanRefer's '<object_id>_<ann_id>'"),
    (Expression("the lamp", [2], source="scanrefer", ann_id="1_0"), "with object_id 2"),
    (Expression("the lamps", [2], source="multi3drefer", ann_id="x"), "field ann_id 'x' is not Multi3DRefer's"),
    (Expression("the lamp", [2, 3], source="nr3d", ann_id="A1"), "field target_ids holds \\[2, 3\\]"),
])
def test_bad_identifiers_fail_before_anything_is_written(tmp_path, expr, message):
    root = tmp_path / "data"
    write_scene(make_scene("scene0001_00", "axis-align", [expr]), root)
    write_splits(root, {"val": ["scene0001_00"]})
    cfg = EvalConfig(checkpoint=tmp_path / "ckpt", data=root, tasks="grounding", out=tmp_path / "out",
                     write_submission=True)
    with pytest.raises(DataError, match=message) as err:
        run_checkpoint(cfg, grounder=ScriptedGrounder())
    assert "scene0001_00/scene.json" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_scene_level_checks(tmp_path):
    dup = [Expression("a", [], source="multi3drefer", ann_id="4"), Expression("b", [2], source="multi3drefer",
                                                                               ann_id="2_4")]
    path = write_scene(make_scene("scene0001_00", "axis-align", dup), tmp_path / "dup")
    with pytest.raises(DataError, match=r"expressions\[1\] \(multi3drefer\): field ann_id '2_4' repeats "
                                        r"expressions\[0\]"):
        check_submission_scenes([path])
    path = write_scene(make_scene("scene0001_00", "axis-align", expressions()[-1:]), tmp_path / "none")
    with pytest.raises(ValueError, match="no ScanRefer, Sr3d, Nr3d or Multi3DRefer expression"):
        check_submission_scenes([path])
    scene = make_scene("scene0001_00", "axis-align", expressions()[:1])
    scene.meta["alignment"] = {"rotation": [[1, 0], [0, 1]], "translation": [0, 0, 0], "source": "floor-plane"}
    path = write_scene(scene, tmp_path / "bad_alignment")
    with pytest.raises(DataError, match=r"scene.json: field meta.alignment: rotation must be 3x3"):
        check_submission_scenes([path])


def test_flag_needs_the_grounding_task(tmp_path):
    with pytest.raises(ValueError, match="--write-submission writes grounding predictions"):
        EvalConfig(checkpoint=tmp_path, data=tmp_path, tasks="instseg", write_submission=True)
    with pytest.raises(ValueError, match="--write-submission"):
        EvalConfig(predictions=tmp_path, gt=tmp_path, write_submission=True)
