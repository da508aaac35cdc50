"""Multi3DRefer annotations: the reader (zero / one / several targets, query types), its one-line
errors, the ScanRefer reader refusing such a file, and `liftgs convert scannet --multi3drefer`."""

from __future__ import annotations

import json

import pytest

from liftgs.io.errors import DataError
from liftgs.io.referring import read_multi3drefer, read_scanrefer

ROWS = [
    {"scene_id": "scene0000_00", "object_id": "1", "object_ids": [1], "object_name": "table", "ann_id": "0",
     "description": "The table by the wall.", "eval_type": "st_wo_d", "token": ["the", "table"]},
    {"scene_id": "scene0000_00", "object_id": "0", "object_ids": [0, 1, 1], "object_name": "chair", "ann_id": "3",
     "description": "the chairs and the table", "eval_type": "mt"},
    {"scene_id": "scene0000_00", "object_ids": [], "object_name": "sofa", "ann_id": "7",
     "description": "a red sofa under the window", "eval_type": "zt_w_d"},
    {"scene_id": "scene0001_00", "object_ids": [2], "ann_id": "1", "description": "the lamp", "eval_type": "st_w_d"},
]


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return path


def test_reader_keeps_every_target_and_the_type(tmp_path):
    by_scene = read_multi3drefer(_write(tmp_path / "m.json", ROWS))
    assert sorted(by_scene) == ["scene0000_00", "scene0001_00"]
    one, many, none = by_scene["scene0000_00"]
    assert one.target_ids == [1] and one.source == "multi3drefer" and one.ann_id == "1_0"
    assert one.text == "The table by the wall." and one.spans == [(4, 9)] and one.meta["eval_type"] == "st_wo_d"
    assert one.meta["tokens"] == ["the", "table"]
    assert many.target_ids == [0, 1] and many.meta["eval_type"] == "mt"  # duplicates dropped, order kept
    assert none.target_ids == [] and none.spans == [] and none.meta == {"eval_type": "zt_w_d", "object_name": "sofa"}
    assert by_scene["scene0001_00"][0].ann_id == "1" and by_scene["scene0001_00"][0].spans == []


@pytest.mark.parametrize("row, message", [
    ({**ROWS[0], "eval_type": "mt"}, "'mt' needs several target"),
    ({**ROWS[2], "eval_type": "st_w_d"}, "needs one target"),
    ({**ROWS[0], "eval_type": "unique"}, "field 'eval_type' is 'unique'"),
    ({**ROWS[0], "object_ids": "1"}, "field 'object_ids' must be a list of integers"),
    ({k: v for k, v in ROWS[0].items() if k != "eval_type"}, "lacks \\['eval_type'\\]"),
])
def test_reader_errors_name_the_file_and_field(tmp_path, row, message):
    path = _write(tmp_path / "bad.json", [ROWS[1], row])
    with pytest.raises(DataError, match=message) as err:
        read_multi3drefer(path)
    assert "bad.json" in str(err.value) and "annotation 1" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="missing"):
        read_multi3drefer(tmp_path / "none.json")


def test_scanrefer_reader_refuses_a_multi3drefer_file(tmp_path):
    with pytest.raises(DataError, match="Multi3DRefer field 'object_ids'.*read_multi3drefer"):
        read_scanrefer(_write(tmp_path / "m.json", ROWS[:1]))


def test_convert_scannet_attaches_multi3drefer(tmp_path):
    from liftgs.cli import main
    from liftgs.io.scene_dir import read_scene
    from liftgs.testing.datasets import write_scannet_scan

    scans = tmp_path / "scans"
    write_scannet_scan(scans, "scene0000_00")
    path = _write(tmp_path / "m.json", ROWS[:3])
    assert main(["convert", "scannet", str(scans), "--out", str(tmp_path / "out"), "--frame-stride", "2",
                 "--multi3drefer", str(path)]) == 0
    scene = read_scene(tmp_path / "out" / "scene0000_00", load_frames=False)
    assert [(e.target_ids, e.meta["eval_type"]) for e in scene.expressions] == [
        ([1], "st_wo_d"), ([0, 1], "mt"), ([], "zt_w_d")]
