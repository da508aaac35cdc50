"""``liftgs convert`` and ``liftgs inspect`` end to end on tiny fixtures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from liftgs.cli import main
from liftgs.testing.datasets import write_rgbd_folder, write_scannet_scan, write_scanrefer, write_sr3d
from liftgs.io.scene_dir import list_scenes, read_scene, read_splits

pytestmark = pytest.mark.filterwarnings("ignore:.*pose holds NaN")


def test_convert_scannet_with_language_and_splits(tmp_path, capsys):
    scans = tmp_path / "scans"
    for sid in ("scene0000_00", "scene0001_00"):
        write_scannet_scan(scans, sid)
    refer = write_scanrefer(tmp_path / "sr.json", [
        {"scene_id": "scene0000_00", "object_id": "1", "object_name": "table", "ann_id": "0",
         "description": "the table by the wall", "token": []},
        {"scene_id": "scene9999_00", "object_id": "1", "object_name": "x", "ann_id": "0", "description": "x"}])
    sr3d = write_sr3d(tmp_path / "sr3d.csv", [
        {"scan_id": "scene0001_00", "target_id": 0, "utterance": "the chair next to the table",
         "stimulus_id": "s", "reference_type": "next to", "instance_type": "chair", "anchor_ids": "[1]",
         "distractor_ids": "[]"}])
    (tmp_path / "train.txt").write_text("scene0000_00\nscene0100_00\n")
    (tmp_path / "val.txt").write_text("scene0001_00\n")
    out = tmp_path / "out"
    rc = main(["convert", "scannet", str(scans), "--out", str(out), "--frame-stride", "1", "--image-format", "png",
               "--scanrefer", str(refer), "--referit3d", str(sr3d),
               "--train-list", str(tmp_path / "train.txt"), "--val-list", str(tmp_path / "val.txt")])
    assert rc == 0
    assert read_splits(out) == {"train": ["scene0000_00"], "val": ["scene0001_00"]}
    s0 = read_scene(out / "scene0000_00", load_frames=False)
    assert [e.source for e in s0.expressions] == ["scanrefer"] and s0.expressions[0].meta["eval_type"] == "unique"
    s1 = read_scene(out / "scene0001_00")
    assert s1.expressions[0].anchor_ids == [1] and len(s1.frames) == 3
    capsys.readouterr()
    assert main(["inspect", str(out), "--check"]) == 0
    table = capsys.readouterr().out
    assert "scene0000_00  train" in table and "scene0001_00  val" in table
    total = [line for line in table.splitlines() if line.startswith("TOTAL")][0].split()
    assert total[1:4] == ["2", "scenes", str(s0.num_points + s1.num_points)]


def test_convert_rgbd(tmp_path, capsys):
    root = write_rgbd_folder(tmp_path / "seq-01", layout="7scenes")
    out = tmp_path / "out"
    rc = main(["convert", "rgbd", str(root), "--out", str(out), "--fxfycxcy", "15", "15", "10", "7.5",
               "--invalid-depth", "65535"])
    assert rc == 0
    scene = read_scene(out / "seq-01")
    assert len(scene.frames) == 4 and scene.frames[0].depth[0, 0] == 0
    np.testing.assert_allclose(scene.points[:, 1], 2.0, atol=1e-5)


def test_failed_conversion_leaves_nothing(tmp_path, capsys):
    scans = tmp_path / "scans"
    good = write_scannet_scan(scans, "scene0000_00")
    bad = write_scannet_scan(scans, "scene0001_00")
    (bad / "depth" / "3.png").write_bytes(b"\x89PNG\r\n")  # truncated
    out = tmp_path / "out"
    rc = main(["convert", "scannet", str(bad), str(good), "--out", str(out), "--frame-stride", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("liftgs convert: ") and "depth/3.png" in err and "cannot decode" in err
    assert not out.exists() or list(out.iterdir()) == []  # stopped at the bad scan, nothing written
    rc = main(["convert", "scannet", str(scans), "--out", str(out), "--frame-stride", "1", "--keep-going"])
    assert rc == 1
    assert [p.name for p in list_scenes(out)] == ["scene0000_00"]
    assert sorted(p.name for p in out.iterdir()) == ["scene0000_00"]


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["convert"]) == 2
    assert main(["convert", "scannet", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither a ScanNet scan folder" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert", "scannet", str(tmp_path), "--out", str(tmp_path / "o"), "--frame-stride", "0"]) == 2
