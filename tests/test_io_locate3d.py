"""Locate 3D (L3DD) reader: every target, anchor and span kept; bad records named; CLI wiring."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from liftgs.cli import main
from liftgs.io.errors import DataError
from liftgs.io.locate3d import read_locate3d
from liftgs.io.referring import attach_expressions
from liftgs.io.scene_dir import list_scenes, read_scene, write_scene
from liftgs.testing.datasets import write_locate3d, write_scannet_scan
from liftgs.types import Expression, ObjectInfo, Scene

pytestmark = pytest.mark.filterwarnings("ignore:.*pose holds NaN")


def _record(scene_id, object_id, name, ann_id, tokens, entities, **extra) -> dict:
    """A record laid out as in locate3d_data/dataset/*.json (description = joined tokens)."""
    return {"object_id": object_id, "object_name": name, "ann_id": ann_id, "description": " ".join(tokens),
            "token": tokens, "entities": entities, "primary_key": f"pk{scene_id}{ann_id}",
            "scene_id": scene_id, **extra}


RECORDS = [
    # The README's example: three entities, a trailing empty token (description ends in a space).
    _record("scene0000_00", 48, "shelf", 0,
            ["white", "moving", "trolley", "is", "in", "between", "of", "white", "door", "and", "grey", "sofa", ""],
            [[[0, 1, 2], ["48_shelf"]], [[10, 11], ["5_sofa"]], [[7, 8], ["1_door"]]], scene_dataset="ScanNet"),
    # One phrase denoting two instances: both are targets.
    _record("scene0000_00", 5, "bathroom vanity", 1, ["wash", "basin", "is", "beside", "the", "toilet"],
            [[[0, 1], ["5_bathroom_vanity", "6_sink"]], [[5], ["7_toilet"]]], scene_dataset="ScanNet"),
    # ScanEnts3D-like: no scene_dataset (= ScanNet), string ids, target named twice, leading empty token,
    # an anchor phrase naming two desks.
    _record("scene0001_00", "2", "chair", "0",
            ["", "the", "chair", "near", "the", "desk", ",", "it", "is", "black", ""],
            [[[1, 2], ["2_chair"]], [[7], ["2_chair"]], [[4, 5], ["4_desk", "8_desk"]]]),
    # ScanNet++: non-consecutive target tokens, frames_used.
    _record("0a5c013435", 17, "bed", 0, ["bed", "with", "a", "bedsheet", "on", "the", "bed"],
            [[[6, 0], ["17_bed"]], [[3], ["20_blanket"]]], scene_dataset="ScanNet++", frames_used=[330, 360]),
    # ARKitScenes: index-named instances and one box per index.
    _record("42898818", 0, "frame", 0, ["frame", "above", "the", "drawer"],
            [[[0], ["0_object"]], [[2, 3], ["1_object"]]], scene_dataset="ARKitScenes",
            gt_boxes=[[[-4.5, -4.25], [0.5, 1.5], [0.25, 0.75]], [[-1.0, 1.0], [0.0, 2.0], [0.0, 0.5]]]),
]


def _phrases(e: Expression) -> list[str]:
    return [e.text[a:b] for a, b in e.spans]


def test_reads_every_target_anchor_and_span(tmp_path):
    by_scene = read_locate3d(write_locate3d(tmp_path / "val.json", RECORDS))
    assert sorted(by_scene) == ["0a5c013435", "42898818", "scene0000_00", "scene0001_00"]
    readme, basin = by_scene["scene0000_00"]
    assert readme == Expression(
        text="white moving trolley is in between of white door and grey sofa",
        target_ids=[48], spans=[(0, 20)], anchor_ids=[5, 1], source="locate3d", ann_id="pkscene0000_000",
        meta={"scene_dataset": "ScanNet", "tokens": RECORDS[0]["token"], "object_name": "shelf", "ann_id": 0,
              "entities": [{"token_indices": [0, 1, 2], "instances": ["48_shelf"], "spans": [[0, 20]]},
                           {"token_indices": [10, 11], "instances": ["5_sofa"], "spans": [[53, 62]]},
                           {"token_indices": [7, 8], "instances": ["1_door"], "spans": [[38, 48]]}]})
    assert [readme.text[a:b] for e in readme.meta["entities"] for a, b in e["spans"]] == [
        "white moving trolley", "grey sofa", "white door"]
    assert basin.target_ids == [5, 6] and _phrases(basin) == ["wash basin"] and basin.anchor_ids == [7]

    (chair,) = by_scene["scene0001_00"]
    assert chair.text == "the chair near the desk , it is black"
    assert chair.target_ids == [2] and _phrases(chair) == ["the chair", "it"] and chair.anchor_ids == [4, 8]
    assert chair.meta["scene_dataset"] == "ScanNet" and chair.meta["ann_id"] == 0
    assert [e["spans"] for e in chair.meta["entities"]] == [[[0, 9]], [[26, 28]], [[15, 23]]]

    (bed,) = by_scene["0a5c013435"]
    assert _phrases(bed) == ["bed", "bed"] and bed.spans == [(0, 3), (27, 30)]  # one span per token run
    assert bed.anchor_ids == [20] and bed.meta["frames_used"] == [330, 360]

    (frame,) = by_scene["42898818"]
    assert frame.target_ids == [0] and frame.anchor_ids == [1] and _phrases(frame) == ["frame"]
    assert frame.meta["gt_boxes"] == RECORDS[4]["gt_boxes"] and frame.meta["scene_dataset"] == "ARKitScenes"

    # Every instance of every entity is a target or an anchor, in every record.
    for exprs in by_scene.values():
        for e in exprs:
            named = {int(n.split("_")[0]) for ent in e.meta["entities"] for n in ent["instances"]}
            assert named == set(e.target_ids) | set(e.anchor_ids)
            assert not set(e.target_ids) & set(e.anchor_ids)

    only = read_locate3d(tmp_path / "val.json", scene_dataset="ScanNet")
    assert sorted(only) == ["scene0000_00", "scene0001_00"] and only["scene0000_00"] == [readme, basin]


def test_attach_and_round_trip(tmp_path):
    by_scene = read_locate3d(write_locate3d(tmp_path / "val.json", RECORDS))
    objects = {k: ObjectInfo(c) for k, c in ((48, "shelf"), (5, "sofa"), (1, "door"), (6, "sink"), (7, "toilet"))}
    scene = Scene("scene0000_00", np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), objects=objects)
    scene = attach_expressions(scene, by_scene["scene0000_00"])
    assert read_scene(write_scene(scene, tmp_path / "out")).expressions == by_scene["scene0000_00"]
    del objects[7]  # the toilet anchor is missing from this scene
    with pytest.raises(DataError, match=r"locate3d expression 'pkscene0000_001' names objects \[7\]"):
        attach_expressions(Scene("scene0000_00", np.zeros((2, 3)), np.zeros((2, 3)), objects=objects),
                           by_scene["scene0000_00"])


def _broken(index: int, **changes) -> list[dict]:
    rows = copy.deepcopy(RECORDS)
    for key, value in changes.items():
        if value is None:
            del rows[index][key]
        else:
            rows[index][key] = value
    return rows


BAD_RECORDS = [
    (_broken(1, entities=None), r"record 1 lacks \['entities'\] \(a ScanRefer file\? read it with read_scanrefer"),
    (_broken(0, object_id="forty"), r"record 0: field 'object_id' is 'forty', not a non-negative integer"),
    (_broken(2, token="the chair"), r"record 2: field 'token' is not a list of strings"),
    (_broken(2, token=["", " "]), r"record 2: field 'token' holds no words"),
    (_broken(0, entities=[[[0, 1, 2]]]), r"record 0: field 'entities\[0\]' is not a pair"),
    (_broken(1, entities=[[[0, 1], ["5_vanity"]], [[9], ["7_toilet"]]]),
     r"record 1: field 'entities\[1\]\[0\]' has token index 9 but 'token' has 6 words"),
    (_broken(1, entities=[[[], ["5_vanity"]]]), r"record 1: field 'entities\[0\]\[0\]' names no token"),
    (_broken(1, entities=[[[0], ["5_vanity", "sink"]]]),
     r"record 1: field 'entities\[0\]\[1\]\[1\]' is 'sink', not '<object id>_<label>'"),
    (_broken(3, scene_dataset="Matterport"), r"record 3: field 'scene_dataset' is 'Matterport', not one of"),
    (_broken(3, frames_used=330), r"record 3: field 'frames_used' is not a list"),
    (_broken(4, gt_boxes=[[[0.0, float("nan")], [0, 1], [0, 1]]] * 2), r"record 4: field 'gt_boxes' is not a list of finite"),
    (_broken(4, gt_boxes=[[[0, 1], [0, 1], [0, 1]]]), r"record 4: field 'gt_boxes' has 1 boxes but the entities name object 1"),
    (_broken(0, scene_id=7), r"record 0: field 'scene_id' is not a string \(got int\)"),
    (_broken(0, description=["white"]), r"record 0: field 'description' is not a string \(got list\)"),
    (RECORDS[:2] + ["scene0000_00"], r"record 2 is a str, not an object"),
]


@pytest.mark.parametrize("rows, message", BAD_RECORDS)
def test_bad_records_are_named(tmp_path, rows, message):
    path = tmp_path / "val_scannet.json"
    path.write_text(json.dumps(rows))  # NaN written as the bare literal Python's json reads back
    with pytest.raises(DataError, match=r"val_scannet\.json: " + message) as err:
        read_locate3d(path)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"none\.json: Locate 3D file is missing"):
        read_locate3d(tmp_path / "none.json")
    path = write_locate3d(tmp_path / "val.json", RECORDS)
    path.write_text(path.read_text()[:-30])
    with pytest.raises(DataError, match=r"val\.json: cannot parse Locate 3D JSON"):
        read_locate3d(path)
    path.write_text(json.dumps({"annotations": RECORDS}))
    with pytest.raises(DataError, match=r"val\.json: Locate 3D JSON must be a list of records, got a dict"):
        read_locate3d(path)
    with pytest.raises(ValueError, match="scene_dataset must be one of"):
        read_locate3d(write_locate3d(path, RECORDS), scene_dataset="scannet")


def test_convert_attaches_locate3d(tmp_path, capsys):
    """`liftgs convert scannet --locate3d`: ScanNet records land on their converted scenes."""
    scans = tmp_path / "scans"
    write_scannet_scan(scans, "scene0000_00")  # objects 0 "chair" and 1 "table"
    rows = [
        _record("scene0000_00", 0, "chair", 0, ["the", "chair", "left", "of", "the", "table"],
                [[[0, 1], ["0_chair"]], [[4, 5], ["1_table"]]], scene_dataset="ScanNet"),
        _record("scene0000_00", 1, "table", 1, ["the", "furniture", "by", "the", "wall"],
                [[[0, 1], ["1_table", "0_chair"]]], scene_dataset="ScanNet"),
        _record("scene0000_00", 9, "sofa", 0, ["a", "sofa"], [[[1], ["9_sofa"]]], scene_dataset="ScanNet++"),
        _record("scene9999_00", 3, "door", 0, ["a", "door"], [[[1], ["3_door"]]], scene_dataset="ScanNet"),
    ]
    l3d = write_locate3d(tmp_path / "val_scannet.json", rows)
    out = tmp_path / "out"
    assert main(["convert", "scannet", str(scans), "--out", str(out), "--frame-stride", "2",
                 "--image-format", "png", "--locate3d", str(l3d)]) == 0
    left, both = read_scene(out / "scene0000_00", load_frames=False).expressions
    assert (left.source, left.target_ids, left.anchor_ids, left.spans) == ("locate3d", [0], [1], [(0, 9)])
    assert (both.target_ids, both.anchor_ids, both.text[slice(*both.spans[0])]) == ([1, 0], [], "the furniture")

    capsys.readouterr()
    bad = write_locate3d(tmp_path / "bad.json", rows[:1] + [dict(rows[1], entities=[[[7], ["1_table"]]])])
    assert main(["convert", "scannet", str(scans), "--out", str(tmp_path / "o2"), "--locate3d", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.json: record 1: field 'entities[0][0]' has token index 7" in err
    assert not (tmp_path / "o2").exists() or list_scenes(tmp_path / "o2") == []

    other = write_locate3d(tmp_path / "val_scannetpp.json", rows[2:3])
    assert main(["convert", "scannet", str(scans), "--out", str(tmp_path / "o3"), "--locate3d", str(other)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "val_scannetpp.json: holds no ScanNet record (field 'scene_dataset')" in err
    assert not (tmp_path / "o3").exists() or list_scenes(tmp_path / "o3") == []

    # The same file given to the ScanRefer reader is refused, not read with its anchors dropped.
    assert main(["convert", "scannet", str(scans), "--out", str(tmp_path / "o4"), "--scanrefer", str(l3d)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "val_scannet.json: annotation 0 has Locate 3D field 'entities'" in err
    assert "read_locate3d" in err and not (tmp_path / "o4").exists()
