"""ScanNet v2 reader on a tiny fixture in the exact SensReader export layout."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from liftgs.geometry import invert_pose, project_points
from liftgs.io.errors import DataError
from liftgs.testing.datasets import PlaneRig, write_label_map, write_scannet_scan
from liftgs.io.scannet import ScanNetConfig, read_scannet_scene
from liftgs.io.scene_dir import read_scene, write_scene


def read(scan, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = read_scannet_scene(ScanNetConfig(scan_dir=scan, frame_stride=kw.pop("frame_stride", 1),
                                                 progress=False, **kw))
    return scene, [str(w.message) for w in caught]


def to_raw(points, A):
    return (np.asarray(points, dtype=np.float64) - A[:3, 3]) @ np.linalg.inv(A[:3, :3]).T


@pytest.fixture
def scan(tmp_path):
    return write_scannet_scan(tmp_path / "scans")


def test_scannet_sensor_cloud(scan):
    rig = PlaneRig()
    A = rig.axis_alignment
    scene, msgs = read(scan)
    assert scene.scene_id == "scene0000_00"
    assert [f.name for f in scene.frames] == ["0", "1", "3"]  # frame 2's -inf pose is skipped
    assert any("pose/2.txt" in m and "NaN/inf" in m for m in msgs)
    f0 = scene.frames[0]
    assert f0.rgb.shape == (15, 20, 3) and f0.depth.shape == (15, 20)  # colour resized to depth size
    np.testing.assert_allclose(f0.camera.K, rig.K_depth)
    assert np.abs(f0.rgb.astype(int) - rig.color).max() <= 3
    # poses moved to the axis-aligned frame
    np.testing.assert_allclose(f0.camera.position, (A @ rig.cam_to_world(0))[:3, 3], atol=1e-9)
    # every fused point lies on the wall (raw y = 2) and projects back onto depth 2 m
    raw = to_raw(scene.points, A)
    np.testing.assert_allclose(raw[:, 1], rig.wall_y, atol=1e-4)
    uv, z = project_points(scene.points, f0.camera.K, f0.camera.viewmat)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 20) & (uv[:, 1] >= 0) & (uv[:, 1] < 15)
    assert inside.sum() > 10
    np.testing.assert_allclose(z[inside], 2.0, atol=1e-4)
    # ground-truth ids transferred from the mesh
    ids = scene.instance_ids
    assert set(np.unique(ids)) == {-1, 0, 1}
    np.testing.assert_array_equal(ids[(raw[:, 0] < -0.1) & (raw[:, 2] < 2.2)], 0)
    np.testing.assert_array_equal(ids[(raw[:, 0] > 0.1) & (raw[:, 2] < 2.2)], 1)
    np.testing.assert_array_equal(ids[raw[:, 2] > 2.4], -1)
    assert {k: o.category for k, o in scene.objects.items()} == {0: "chair", 1: "table"}
    assert scene.meta["scene_type"] == "Office" and scene.meta["point_source"] == "sensor"
    assert np.abs(scene.colors - np.array(rig.color) / 255).max() <= 4 / 255


def test_scannet_round_trip_through_scene_dir(scan, tmp_path):
    scene, _ = read(scan)
    back = read_scene(write_scene(scene, tmp_path / "out", image_format="png"))
    np.testing.assert_array_equal(back.points, scene.points)
    np.testing.assert_array_equal(back.instance_ids, scene.instance_ids)
    assert back.objects == scene.objects and back.meta == scene.meta
    for a, b in zip(scene.frames, back.frames):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth, b.depth)  # 2.000 m is exact at mm resolution
        np.testing.assert_array_equal(a.camera.viewmat, b.camera.viewmat)


def test_scannet_options(scan, tmp_path):
    scene, _ = read(scan, frame_stride=2)
    assert [f.name for f in scene.frames] == ["0"]  # frames 0 and 2; 2 is invalid
    scene, _ = read(scan, image_size=(10, 8))
    f = scene.frames[0]
    assert f.rgb.shape == (8, 10, 3) and f.depth.shape == (8, 10)
    np.testing.assert_allclose(f.camera.K[0], PlaneRig().K_depth[0] * 0.5)
    np.testing.assert_allclose(f.camera.K[1], PlaneRig().K_depth[1] * 8 / 15)
    mesh, _ = read(scan, point_source="mesh")
    rig = PlaneRig()
    verts = rig.mesh_vertices()
    assert mesh.num_points == len(verts)
    np.testing.assert_allclose(to_raw(mesh.points, rig.axis_alignment), verts, atol=1e-4)
    seg = rig.vertex_segments(verts)
    np.testing.assert_array_equal(mesh.instance_ids, np.where(seg == 2, -1, seg))
    tsv = write_label_map(tmp_path / "labels.tsv", {"chair": (2, 5, "chair"), "table": (4, 7, "table")})
    labelled, _ = read(scan, label_map=tsv)
    assert labelled.objects[1].attributes == {"raw_category": "table", "label_id": 4, "nyu40_id": 7,
                                              "nyu40_class": "table"}
    with pytest.raises(ValueError, match="frame_stride"):
        ScanNetConfig(scan_dir=scan, frame_stride=0)


def test_scannet_frames_dir_separate(tmp_path):
    scan = write_scannet_scan(tmp_path / "scans")
    frames = tmp_path / "exports" / scan.name
    frames.mkdir(parents=True)
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scan / sub).rename(frames / sub)
    with pytest.raises(DataError, match="no color/ folder"):
        read(scan)
    scene, _ = read(scan, frames_dir=frames)
    assert len(scene.frames) == 3


# ---- bad input: one clear error naming the file --------------------------------------------

def test_unknown_category_with_label_map(scan, tmp_path):
    tsv = write_label_map(tmp_path / "labels.tsv", {"chair": (2, 5, "chair")})
    with pytest.raises(DataError, match=r"aggregation.json.*'table', unknown to the label map"):
        read(scan, label_map=tsv)


def test_missing_pose_file(scan):
    (scan / "pose" / "1.txt").unlink()
    with pytest.raises(DataError, match=r"pose/1.txt.*missing"):
        read(scan)


def test_truncated_files(scan):
    (scan / "pose" / "1.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(DataError, match=r"pose/1.txt.*found 12.*truncated"):
        read(scan)


def test_truncated_depth_and_mesh(tmp_path):
    scan = write_scannet_scan(tmp_path / "a")
    depth = scan / "depth" / "3.png"
    depth.write_bytes(depth.read_bytes()[:30])
    with pytest.raises(DataError, match=r"depth/3.png.*cannot decode"):
        read(scan)
    scan = write_scannet_scan(tmp_path / "b")
    mesh = scan / "scene0000_00_vh_clean_2.ply"
    mesh.write_bytes(mesh.read_bytes()[:-500])
    with pytest.raises(DataError, match=r"_vh_clean_2.ply"):
        read(scan)


def test_mismatched_image_sizes(tmp_path):
    scan = write_scannet_scan(tmp_path / "a")
    Image.fromarray(np.full((15, 21), 2000, np.uint16)).save(scan / "depth" / "1.png")
    with pytest.raises(DataError, match=r"depth/1.png.*21x15.*mismatched image sizes"):
        read(scan)
    scan = write_scannet_scan(tmp_path / "b")
    Image.fromarray(np.zeros((31, 40, 3), np.uint8)).save(scan / "color" / "3.jpg")
    with pytest.raises(DataError, match=r"color/3.jpg.*40x31.*mismatched"):
        read(scan)


def test_all_poses_invalid_and_empty_cloud(tmp_path):
    rig = PlaneRig()
    scan = write_scannet_scan(tmp_path / "a", invalid_pose_frames=(0, 1, 2, 3))
    with pytest.raises(DataError, match="no usable frame"):
        read(scan)
    scan = write_scannet_scan(tmp_path / "b")
    for i in range(len(rig.camera_x)):
        Image.fromarray(np.zeros((15, 20), np.uint16)).save(scan / "depth" / f"{i}.png")
    with pytest.raises(DataError, match="empty point cloud"):
        read(scan)


def test_segs_do_not_match_mesh(scan):
    path = scan / "scene0000_00_vh_clean_2.0.010000.segs.json"
    doc = json.loads(path.read_text())
    doc["segIndices"] = doc["segIndices"][:-3]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"segs.json.*segIndices has \d+ entries but the mesh has"):
        read(scan)


def test_non_rigid_pose_rejected(scan):
    T = invert_pose(np.eye(4))
    T[3, 0] = 0.5
    (scan / "pose" / "0.txt").write_text("\n".join(" ".join(map(str, r)) for r in T))
    with pytest.raises(DataError, match=r"pose/0.txt.*last row"):
        read(scan)


def test_alignment_recorded_axis_align_or_floor(scan):
    rig = PlaneRig()
    scene, _ = read(scan)
    al = scene.meta["alignment"]
    assert al["source"] == "axis-align" and al["file"] == "scene0000_00.txt"
    np.testing.assert_allclose(np.array(al["rotation"]), rig.axis_alignment[:3, :3], atol=1e-8)  # 9 digits in the file
    np.testing.assert_allclose(np.array(al["translation"]), rig.axis_alignment[:3, 3], atol=1e-8)
    # a test-split scan: no axisAlignment, no annotation; its mesh has a floor, tilted by 10 degrees
    meta = scan / "scene0000_00.txt"
    meta.write_text("\n".join(line for line in meta.read_text().splitlines() if "axisAlignment" not in line))
    for name in ("scene0000_00.aggregation.json", "scene0000_00_vh_clean_2.0.010000.segs.json"):
        (scan / name).unlink()
    from liftgs.geometry import rotation_between
    from liftgs.io.ply import write_point_cloud

    xs, ys = np.meshgrid(np.arange(-2, 2, 0.05), np.arange(-1, 2, 0.05))
    floor = np.c_[xs.ravel(), ys.ravel(), np.zeros(xs.size)]
    R = rotation_between([0, 0, 1.0], [np.sin(np.radians(10)), 0, np.cos(np.radians(10))])
    verts = np.concatenate([rig.mesh_vertices(), floor]) @ R.T
    write_point_cloud(scan / "scene0000_00_vh_clean_2.ply", verts.astype(np.float32),
                      np.full((len(verts), 3), 0.5, np.float32))
    for i in (0, 1, 3):
        T = rig.cam_to_world(i)
        np.savetxt(scan / "pose" / f"{i}.txt", np.r_[np.c_[R @ T[:3, :3], R @ T[:3, 3]], [[0, 0, 0, 1]]])
    scene, _ = read(scan, point_source="mesh")
    al = scene.meta["alignment"]
    assert al["source"] == "floor-plane"
    level = scene.points[len(rig.mesh_vertices()):]
    assert level[:, 2].std() < 1e-3  # the floor is level again
    f0 = scene.frames[0]  # cameras moved with the points: the wall is 2 m in front of frame 0
    uv, z = project_points(scene.points[: len(rig.mesh_vertices())], f0.camera.K, f0.camera.viewmat)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 20) & (uv[:, 1] >= 0) & (uv[:, 1] < 15) & (z > 0)
    assert inside.sum() > 10
    np.testing.assert_allclose(z[inside], 2.0, atol=1e-4)


def test_zero_focal_intrinsics_refused(scan):
    K = np.eye(4)
    K[0, 0] = 0.0
    (scan / "intrinsic" / "intrinsic_depth.txt").write_text("\n".join(" ".join(map(str, r)) for r in K))
    with pytest.raises(DataError, match=r"intrinsic_depth.txt: fx = 0: focal lengths must be positive"):
        read(scan)
