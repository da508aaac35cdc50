"""Instance AP per ScanNet mesh vertex (``liftgs eval --scannet-scans``) on the miniature ScanNet
scan: a wall whose left half is a chair and right half a table, seen by a few depth frames."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from liftgs.eval.cli import EvalConfig, results_report, run_checkpoint
from liftgs.eval.instance_ap import OVERLAPS, ClassSet, InstancePrediction
from liftgs.eval.mesh_vertices import MeshVertices, read_mesh_vertices, to_vertices, vertex_gt_ids
from liftgs.eval.report import write_report
from liftgs.io import read_scene, write_scene, write_splits
from liftgs.io.errors import DataError
from liftgs.io.scannet import ScanNetConfig, read_scannet_scene
from liftgs.testing import PlaneRig, write_scannet_scan
from liftgs.types import ObjectInfo, Scene

SCENE = "scene0000_00"


def convert(scans, root, point_source="sensor"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frame 2's lost-tracking pose
        scene = read_scannet_scene(ScanNetConfig(scan_dir=scans / SCENE, frame_stride=1, pixel_stride=1,
                                                 point_source=point_source, progress=False))
    write_scene(scene, root)
    write_splits(root, {"val": [SCENE]})
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("scannet")
    scans = base / "scans"
    write_scannet_scan(scans)
    return {"scans": scans, "sensor": convert(scans, base / "sensor"), "mesh": convert(scans, base / "mesh", "mesh")}


def aligned_vertices() -> np.ndarray:
    rig = PlaneRig()
    A = rig.axis_alignment
    return rig.mesh_vertices() @ A[:3, :3].T + A[:3, 3]


def raw_z(points) -> np.ndarray:
    A = PlaneRig().axis_alignment
    return ((np.asarray(points, np.float64) - A[:3, 3]) @ A[:3, :3])[:, 2]


class MaskGrounder:
    """For each category name: the masks ``masks(scene, name)`` returns, scored 0.9."""

    def __init__(self, masks) -> None:
        self.masks = masks

    def phrases(self, scene, names):
        out = []
        for name in names:
            m = np.array(self.masks(scene, name), dtype=bool).reshape(-1, scene.num_points)
            out.append((m, np.full(len(m), 0.9)))
        return out

    def expressions(self, scene, exprs):
        raise AssertionError("instseg only")


def oracle(scene, name):
    return [scene.instance_ids == k for k, o in scene.objects.items() if o.category == name]


def evaluate(root, out, grounder, scans=None, write_predictions=False):
    cfg = EvalConfig(checkpoint=out / "ckpt", data=root, tasks="instseg", out=out, scannet_scans=scans,
                     write_predictions=write_predictions)
    return run_checkpoint(cfg, grounder=grounder)


def test_vertex_gt_and_transfer_by_hand():
    mesh = MeshVertices(vertices=np.zeros((5, 3)), instance_ids=np.array([4, 4, 9, -1, 7], np.int32),
                        nearest_point=np.array([2, 2, 0, 1, 1]), path=None)
    scene = Scene("s", np.zeros((3, 3)), np.zeros((3, 3)), objects={4: ObjectInfo("chair"), 7: ObjectInfo("lamp"),
                                                                     9: ObjectInfo("table")})
    assert vertex_gt_ids(mesh, scene, ClassSet.from_names(["chair", "table"])).tolist() == [1001, 1001, 2002, 0, 0]
    moved = to_vertices([InstancePrediction(np.array([0, 1, 1]), 2, 0.7, "p")], mesh.nearest_point)
    assert moved[0].mask.tolist() == [True, True, False, True, True]
    assert (moved[0].label_id, moved[0].score, moved[0].name) == (2, 0.7, "p")


def test_mesh_vertices_in_the_scene_frame(data):
    scene = read_scene(data["sensor"] / SCENE, load_frames=False)
    mesh = read_mesh_vertices(data["scans"], scene)
    np.testing.assert_allclose(mesh.vertices, aligned_vertices(), atol=1e-5)  # axisAlignment re-applied
    seg = PlaneRig().vertex_segments(PlaneRig().mesh_vertices())
    assert mesh.instance_ids.tolist() == np.where(seg == 2, -1, seg).tolist()
    d = np.linalg.norm(aligned_vertices()[:, None] - scene.points[None].astype(np.float64), axis=-1)
    # a nearest point of every vertex (the sensor points lie on a grid: ties are common)
    np.testing.assert_allclose(d[np.arange(len(d)), mesh.nearest_point], d.min(1), atol=1e-6)


def test_mesh_protocol_scores_every_vertex_and_says_so(data, tmp_path):
    res = evaluate(data["sensor"], tmp_path, MaskGrounder(oracle), scans=data["scans"], write_predictions=True)
    assert res.info["instseg_protocol"] == "mesh vertices"
    assert res.instseg.summary() == {"ap": 1.0, "ap50": 1.0, "ap25": 1.0}
    # the benchmark files hold one line per mesh vertex, GT = label * 1000 + instance as ScanNet's
    seg = PlaneRig().vertex_segments(PlaneRig().mesh_vertices())
    gt = np.loadtxt(tmp_path / "benchmark" / "gt" / f"{SCENE}.txt", dtype=np.int64)
    assert gt.tolist() == np.select([seg == 0, seg == 1], [1001, 2002], 0).tolist()  # chair = 1, table = 2
    masks = sorted((tmp_path / "benchmark" / "predictions" / "pred_mask").iterdir())
    assert len(masks) == 2 and all(len(m.read_text().split()) == len(seg) for m in masks)
    tables, doc = results_report(res, "t")
    md, js = write_report(tmp_path, tables, doc)
    assert json.loads(js.read_text())["instseg"]["protocol"] == "mesh vertices"
    assert "### Instance segmentation on mesh vertices: summary (1 scenes)" in md.read_text()
    points = evaluate(data["sensor"], tmp_path / "points", MaskGrounder(oracle))
    assert points.info["instseg_protocol"] == "points"
    assert "on points" in results_report(points, "t")[0][0].title


def test_partial_mask_scores_its_vertex_iou(data, tmp_path):
    """The chair answered by its points below raw z = 1.5 m: the two protocols count different IoUs."""
    def lower_chair(scene, name):
        masks = oracle(scene, name)
        return [m & (raw_z(scene.points) < 1.5) for m in masks] if name == "chair" else masks

    scene = read_scene(data["sensor"] / SCENE, load_frames=False)
    chair = scene.instance_ids == 0
    pred = chair & (raw_z(scene.points) < 1.5)
    point_iou = pred.sum() / chair.sum()
    d = np.linalg.norm(aligned_vertices()[:, None] - scene.points[None].astype(np.float64), axis=-1)
    vertex_pred = pred[d.argmin(1)]
    vertex_gt = PlaneRig().vertex_segments(PlaneRig().mesh_vertices()) == 0
    vertex_iou = (vertex_pred & vertex_gt).sum() / (vertex_pred | vertex_gt).sum()
    # one GT, one prediction: AP at a threshold is 1 when IoU exceeds it, else 0
    expected = {iou: float(np.mean([iou > t for t in OVERLAPS[:9]])) for iou in (point_iou, vertex_iou)}
    assert expected[point_iou] != expected[vertex_iou]
    on_points = evaluate(data["sensor"], tmp_path / "p", MaskGrounder(lower_chair)).instseg.per_class()
    on_mesh = evaluate(data["sensor"], tmp_path / "m", MaskGrounder(lower_chair), data["scans"]).instseg.per_class()
    assert on_points["chair"]["ap"] == pytest.approx(expected[point_iou])
    assert on_mesh["chair"]["ap"] == pytest.approx(expected[vertex_iou])
    assert on_mesh["table"]["ap"] == 1.0


def test_mesh_point_source_gives_the_same_ap_on_both_protocols(data, tmp_path):
    """Scenes converted with --point-source mesh are the vertices: the transfer is the identity."""
    scene = read_scene(data["mesh"] / SCENE, load_frames=False)
    mesh = read_mesh_vertices(data["scans"], scene)
    np.testing.assert_array_equal(mesh.nearest_point, np.arange(scene.num_points))

    def noisy(scene, name):  # oracle masks with 30 % of the points flipped, plus three random masks
        rng = np.random.default_rng(sum(map(ord, name)))
        masks = oracle(scene, name)
        flipped = [m ^ (rng.random(scene.num_points) < 0.3) for m in masks]
        return flipped + list(rng.random((3, scene.num_points)) < 0.4)

    a = evaluate(data["mesh"], tmp_path / "p", MaskGrounder(noisy))
    b = evaluate(data["mesh"], tmp_path / "m", MaskGrounder(noisy), data["scans"])
    assert 0.0 < a.instseg.summary()["ap25"] < 1.0
    np.testing.assert_array_equal(a.instseg.ap, b.instseg.ap)


def _copy(data, tmp_path, name):
    import shutil

    shutil.copytree(data["scans"], tmp_path / name / "scans")
    shutil.copytree(data["sensor"], tmp_path / name / "data")
    return tmp_path / name / "scans", tmp_path / name / "data"


def test_missing_files_and_alignment_fail_before_anything_runs(data, tmp_path):
    scans, root = _copy(data, tmp_path, "a")
    (scans / SCENE / f"{SCENE}.aggregation.json").unlink()
    with pytest.raises(DataError, match=rf"{SCENE}.aggregation.json: missing: --scannet-scans needs it"):
        evaluate(root, tmp_path / "out", MaskGrounder(oracle), scans)
    scans, root = _copy(data, tmp_path, "b")
    doc = json.loads((root / SCENE / "scene.json").read_text())
    del doc["meta"]["alignment"]
    (root / SCENE / "scene.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"scene.json: field meta.alignment is missing"):
        evaluate(root, tmp_path / "out", MaskGrounder(oracle), scans)
    with pytest.raises(DataError, match="--scannet-scans: not a folder"):
        evaluate(root, tmp_path / "out", MaskGrounder(oracle), tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()


def test_wrong_scan_is_refused(data, tmp_path):
    scans, root = _copy(data, tmp_path, "a")
    doc = json.loads((root / SCENE / "scene.json").read_text())
    doc["meta"]["alignment"]["translation"][0] += 1.0  # another alignment than the converter applied
    (root / SCENE / "scene.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"_vh_clean_2.ply: the points of scene scene0000_00 lie 0.\d+ m \(median\) "
                                        r"from this mesh"):
        evaluate(root, tmp_path / "out", MaskGrounder(oracle), scans)
    scans, root = _copy(data, tmp_path, "b")
    agg = scans / SCENE / f"{SCENE}.aggregation.json"
    agg.write_text(agg.read_text().replace('"label": "table"', '"label": "desk"'))
    with pytest.raises(DataError, match=r"aggregation.json: segGroups objectId 1 \('desk'\) does not match scene "
                                        r"scene0000_00 \('table'\)"):
        evaluate(root, tmp_path / "out", MaskGrounder(oracle), scans)


def test_flag_needs_the_instseg_task(tmp_path):
    with pytest.raises(ValueError, match="--scannet-scans scores instance masks"):
        EvalConfig(checkpoint=tmp_path, data=tmp_path, tasks="grounding", scannet_scans=tmp_path)
    with pytest.raises(ValueError, match="--scannet-scans"):
        EvalConfig(predictions=tmp_path, gt=tmp_path, scannet_scans=tmp_path)
