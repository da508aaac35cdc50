"""ScanNet benchmark file formats: round trip, scoring a folder, clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.eval.instance_ap import ClassSet, InstancePrediction, evaluate_instances
from liftgs.eval.scannet_format import (
    evaluate_prediction_dir,
    gt_ids_from_instances,
    read_ids,
    read_predictions,
    write_ids,
    write_predictions,
)

P = 600
CLASSES = ClassSet.from_names(["chair", "table"])


def span(a, b):
    m = np.zeros(P, dtype=bool)
    m[a:b] = True
    return m


def scene_data():
    gt = np.zeros(P, dtype=np.int64)
    gt[0:200], gt[200:400], gt[400:550] = 1001, 1002, 2001
    preds = [InstancePrediction(span(0, 200), 1, 0.9), InstancePrediction(span(400, 550), 1, 0.8),
             InstancePrediction(span(210, 400), 1, 0.7), InstancePrediction(span(400, 560), 2, 0.25)]
    return gt, preds


def test_round_trip(tmp_path):
    gt, preds = scene_data()
    txt = write_predictions(tmp_path / "pred", "scene0000_00", preds)
    lines = txt.read_text().splitlines()
    assert lines[0] == "pred_mask/scene0000_00_000.txt 1 0.900000"
    assert (tmp_path / "pred" / "pred_mask" / "scene0000_00_003.txt").read_text().count("\n") == P
    back = read_predictions(txt, num_vertices=P)
    assert [(p.label_id, p.score) for p in back] == [(p.label_id, p.score) for p in preds]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(back, preds))
    write_ids(tmp_path / "gt" / "scene0000_00.txt", gt)
    assert np.array_equal(read_ids(tmp_path / "gt" / "scene0000_00.txt"), gt)
    from_files = evaluate_prediction_dir(tmp_path / "pred", tmp_path / "gt", CLASSES)
    in_memory = evaluate_instances([(gt, preds)], CLASSES)
    np.testing.assert_array_equal(from_files.ap, in_memory.ap)
    assert from_files.per_class()["chair"]["ap50"] == pytest.approx(19 / 24)


def test_official_file_details(tmp_path):
    # label ids written as floats are accepted (the script does int(float(x))); non-zero ints are "inside"
    (tmp_path / "pred" / "m").mkdir(parents=True)
    (tmp_path / "pred" / "m" / "a.txt").write_text("".join("7\n" if i < 150 else "0\n" for i in range(P)))
    (tmp_path / "pred" / "s.txt").write_text("m/a.txt 1.0 0.5\nm/b.txt 9 0.1\n")  # label 9: not read at all
    preds = read_predictions(tmp_path / "pred" / "s.txt", num_vertices=P, label_ids=CLASSES.ids)
    assert len(preds) == 1 and preds[0].label_id == 1 and preds[0].mask.sum() == 150


@pytest.mark.parametrize("content, message", [
    ("m/a.txt 1\n", "expected '<relative mask path> <label id> <confidence>'"),
    ("m/a.txt chair 0.5\n", "must be numbers"),
    ("m/a.txt 1 nan\n", "finite"),
    ("/abs/a.txt 1 0.5\n", "must be relative"),
    ("../a.txt 1 0.5\n", "outside"),
    ("m/missing.txt 1 0.5\n", "does not exist"),
    ("m/short.txt 1 0.5\n", "has 10 lines but the scene has 600"),
    ("m/bad.txt 1 0.5\n", "line 3: expected one integer"),
])
def test_bad_prediction_files_name_the_file(tmp_path, content, message):
    pred = tmp_path / "pred"
    (pred / "m").mkdir(parents=True)
    (pred / "m" / "short.txt").write_text("1\n" * 10)
    (pred / "m" / "bad.txt").write_text("1\n0\nx\n" + "0\n" * (P - 3))
    f = pred / "scene.txt"
    f.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        read_predictions(f, num_vertices=P)
    assert "scene.txt" in str(info.value) or "missing.txt" in str(info.value)


def test_prediction_dir_errors(tmp_path):
    (tmp_path / "pred").mkdir()
    with pytest.raises(FileNotFoundError, match="no <scene>.txt"):
        evaluate_prediction_dir(tmp_path / "pred", tmp_path / "gt", CLASSES)
    write_predictions(tmp_path / "pred", "sceneA", [])
    with pytest.raises(FileNotFoundError, match="sceneA.txt has no ground truth"):
        evaluate_prediction_dir(tmp_path / "pred", tmp_path / "gt", CLASSES)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "sceneA.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        evaluate_prediction_dir(tmp_path / "pred", tmp_path / "gt", CLASSES)


def test_gt_ids_from_instances():
    inst = np.array([5, 5, -1, 9, 9, 2, 7])
    out = gt_ids_from_instances(inst, {5: 1, 9: 1, 2: 3})  # 7 has no label -> void
    assert out.tolist() == [1002, 1002, 0, 1003, 1003, 3001, 0]
    with pytest.raises(ValueError, match=">= 1"):
        gt_ids_from_instances(inst, {5: 0})
