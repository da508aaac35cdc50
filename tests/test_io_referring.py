"""ScanRefer JSON and ReferIt3D (Sr3d / Nr3d) CSV readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liftgs.io.errors import DataError
from liftgs.testing.datasets import write_nr3d, write_scanrefer, write_sr3d
from liftgs.io.referring import attach_expressions, find_mention, read_referit3d, read_scanrefer
from liftgs.io.scene_dir import read_scene, write_scene
from liftgs.types import ObjectInfo, Scene

SCANREFER = [
    {"scene_id": "scene0000_00", "object_id": "0", "object_name": "office_chair", "ann_id": "0",
     "description": "this is a black office chair. it is next to the table.",
     "token": ["this", "is", "a", "black", "office", "chair", ".", "it", "is", "next", "to", "the", "table", "."]},
    {"scene_id": "scene0000_00", "object_id": "2", "object_name": "table", "ann_id": "1",
     "description": "The TABLES are brown.", "token": ["the", "tables", "are", "brown", "."]},
    {"scene_id": "scene0001_00", "object_id": "5", "object_name": "lamp", "ann_id": "0",
     "description": "a tall light in the corner", "token": ["a", "tall", "light"]},
]
SR3D = [
    {"scan_id": "scene0000_00", "target_id": 0, "distractor_ids": "[1]", "utterance": "find the office chair that is closest to the table",
     "stimulus_id": "scene0000_00-office chair-2-0-1", "coarse_reference_type": "horizontal",
     "reference_type": "closest", "instance_type": "office chair", "anchors_types": "['table']",
     "anchor_ids": "[2]", "tokens": "['find']", "dataset": "sr3d", "mentions_target_class": "True",
     "correct_guess": "True"},
]
NR3D = [
    {"assignmentid": "A1", "stimulus_id": "scene0000_00-office chair-2-1-0", "utterance": "The chair facing the window",
     "correct_guess": "True", "speaker_id": "s", "listener_id": "l", "scan_id": "scene0000_00",
     "instance_type": "office chair", "target_id": 1, "tokens": "['the']", "dataset": "nr3d",
     "mentions_target_class": "False", "uses_object_lang": "True", "uses_spatial_lang": "True",
     "uses_color_lang": "False", "uses_shape_lang": "False"},
]


def scene_with_objects() -> Scene:
    objs = {0: ObjectInfo("office chair"), 1: ObjectInfo("office chair"), 2: ObjectInfo("table")}
    return Scene("scene0000_00", np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), objects=objs)


def test_find_mention():
    assert find_mention("the Office  Chair is red", "office_chair") == (4, 17)
    assert find_mention("two chairs", "chair") == (4, 9)
    assert find_mention("an armchair", "chair") is None  # whole words only
    assert find_mention("a tall light", "lamp") is None


def test_scanrefer(tmp_path):
    path = write_scanrefer(tmp_path / "ScanRefer_filtered_val.json", SCANREFER)
    by_scene = read_scanrefer(path)
    assert sorted(by_scene) == ["scene0000_00", "scene0001_00"]
    e0, e1 = by_scene["scene0000_00"]
    assert e0.target_ids == [0] and e0.source == "scanrefer" and e0.ann_id == "0_0"
    assert e0.text[slice(*e0.spans[0])] == "office chair"
    assert e1.text[slice(*e1.spans[0])] == "TABLE"
    assert e0.meta["tokens"][4] == "office"
    assert by_scene["scene0001_00"][0].spans == []
    scene = attach_expressions(scene_with_objects(), by_scene["scene0000_00"])
    assert [e.meta["eval_type"] for e in scene.expressions] == ["multiple", "unique"]
    back = read_scene(write_scene(scene, tmp_path / "out"))
    assert back.expressions == scene.expressions


def test_sr3d_nr3d(tmp_path):
    sr = read_referit3d(write_sr3d(tmp_path / "sr3d.csv", SR3D))
    (e,) = sr["scene0000_00"]
    assert e.source == "sr3d" and e.target_ids == [0] and e.anchor_ids == [2] and e.relation == "closest"
    assert e.text[slice(*e.spans[0])] == "office chair"
    assert e.meta["distractor_ids"] == [1] and e.meta["mentions_target_class"] is True
    assert e.meta["coarse_reference_type"] == "horizontal"
    nr = read_referit3d(write_nr3d(tmp_path / "nr3d.csv", NR3D))
    (n,) = nr["scene0000_00"]
    assert n.source == "nr3d" and n.ann_id == "A1" and n.anchor_ids == [] and n.spans == []
    assert n.meta["uses_spatial_lang"] is True and n.meta["mentions_target_class"] is False
    scene = attach_expressions(scene_with_objects(), sr["scene0000_00"] + nr["scene0000_00"])
    assert len(scene.expressions) == 2


def test_referring_bad_input(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_scanrefer(tmp_path / "none.json")
    path = write_scanrefer(tmp_path / "sr.json", SCANREFER)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DataError, match="sr.json.*cannot parse"):
        read_scanrefer(path)
    write_scanrefer(path, [{k: v for k, v in SCANREFER[0].items() if k != "object_name"}])
    with pytest.raises(DataError, match=r"annotation 0 lacks \['object_name'\]"):
        read_scanrefer(path)
    csv = write_sr3d(tmp_path / "sr3d.csv", SR3D)
    lines = csv.read_text().splitlines()
    csv.write_text(lines[0] + "\n" + lines[1][:40] + "\n")  # truncated row
    with pytest.raises(DataError, match="sr3d.csv.*row 2.*truncated"):
        read_referit3d(csv)
    csv.write_text("scan_id,utterance\nscene0000_00,hello\n")
    with pytest.raises(DataError, match="lacks columns"):
        read_referit3d(csv, source="sr3d")
    bad = read_scanrefer(write_scanrefer(tmp_path / "x.json", [dict(SCANREFER[0], object_id="9")]))
    with pytest.raises(DataError, match=r"names objects \[9\]"):
        attach_expressions(scene_with_objects(), bad["scene0000_00"], where="x.json")


def test_scanrefer_refuses_other_layouts(tmp_path):
    """A Locate 3D file has every ScanRefer key; read as ScanRefer it would lose its anchors and spans."""
    locate3d = dict(SCANREFER[0], object_id=0, ann_id=0, scene_dataset="ScanNet", primary_key="17",
                    entities=[[[4, 5], ["0_office_chair"]], [[12], ["2_table"]]])
    path = write_scanrefer(tmp_path / "val_scannet.json", [SCANREFER[1], locate3d])
    with pytest.raises(DataError, match=r"val_scannet\.json: annotation 1 has Locate 3D field 'entities', .*"
                                        r"read this file with read_locate3d \(liftgs convert scannet --locate3d\)$") as err:
        read_scanrefer(path)
    assert "\n" not in str(err.value)
    write_scanrefer(path, [{k: v for k, v in locate3d.items() if k != "entities"}])  # any Locate 3D-only field
    with pytest.raises(DataError, match=r"annotation 0 has Locate 3D field 'scene_dataset'"):
        read_scanrefer(path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": 3, "caption": "a cat"}]))
    with pytest.raises(DataError, match=r"other\.json: annotation 0 lacks \['scene_id', 'object_id', 'object_name', "
                                        r"'ann_id', 'description'\] \(not a ScanRefer file\? .*read_locate3d") as err:
        read_scanrefer(other)
    assert "\n" not in str(err.value)
    other.write_text(json.dumps({"scene0000_00": SCANREFER}))
    with pytest.raises(DataError, match=r"other\.json: ScanRefer JSON must be a list of annotations, got a dict"):
        read_scanrefer(other)


def test_referit3d_refuses_other_layouts(tmp_path):
    path = tmp_path / "nr3d.csv"
    path.write_text("image_id,caption\n3,a cat\n")
    with pytest.raises(DataError, match=r"nr3d\.csv: nr3d CSV lacks columns \['scan_id', 'target_id', 'utterance', "
                                        r"'stimulus_id'\] \(has 'caption', 'image_id'; not a ReferIt3D") as err:
        read_referit3d(path)
    assert "\n" not in str(err.value)
    path.write_text(",".join(f"c{i}" for i in range(40)) + "\n")
    with pytest.raises(DataError, match=r"\.\.\. \(40 columns\)"):
        read_referit3d(path)
    path.write_text(json.dumps(SCANREFER))
    with pytest.raises(DataError, match=r"nr3d\.csv: is JSON, not a ReferIt3D CSV: .*read_scanrefer.*read_locate3d"):
        read_referit3d(path)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match=r"nr3d\.csv: cannot read ReferIt3D CSV \(not a UTF-8 CSV file\?\)") as err:
        read_referit3d(path)
    assert "\n" not in str(err.value)
