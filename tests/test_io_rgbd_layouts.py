"""Public RGB-D layouts recognised by their files, z-up alignment, and validation at the door.

Each layout is fabricated (liftgs.testing.datasets.write_room_capture: a box room seen from its
middle, written in a tilted world frame), converted, and checked against the known geometry.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from liftgs.cli import main
from liftgs.geometry import estimate_floor_plane, project_points, rotation_between
from liftgs.io.errors import DataError
from liftgs.io.rgbd import RGBDFolderConfig, detect_layout, read_rgbd_folder
from liftgs.io.scene_dir import read_scene
from liftgs.testing.datasets import RoomRig, write_room_capture

FLOOR_GREY = np.array([128, 128, 128]) / 255


def read(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = read_rgbd_folder(RGBDFolderConfig(root=root, progress=False, pixel_stride=1, voxel_size=0.1, **kw))
    return scene, [str(w.message) for w in caught]


def floor_points(scene):
    return scene.points[np.all(np.abs(scene.colors - FLOOR_GREY) < 0.03, axis=1)]


def assert_z_up(scene):
    """The room's floor is level (normal within 1 degree of +z) and walls are vertical."""
    floor = floor_points(scene)
    assert len(floor) > 100
    normal = np.linalg.svd(floor - floor.mean(0))[2][2]
    assert np.degrees(np.arccos(abs(normal[2]))) < 1.0
    assert floor[:, 2].std() < 0.01
    assert np.median(scene.points[:, 2]) > floor[:, 2].mean() + 0.3  # the room is above its floor


def assert_reprojects(scene, rig=RoomRig()):
    """Points and frames still agree after alignment: points project onto their measured depth."""
    W, H = rig.depth_size
    for f in scene.frames[::2]:
        uv, z = project_points(scene.points, f.camera.K, f.camera.viewmat)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
        assert inside.sum() > 100
        d = f.depth[uv[inside, 1].astype(int), uv[inside, 0].astype(int)]
        assert np.median(np.abs(z[inside] - d)) < 0.02


# ---- layouts -----------------------------------------------------------------------------

def test_7scenes_sequences_jpg_and_camera_intrinsics(tmp_path):
    root = write_room_capture(tmp_path / "chess", "7scenes", color_format="jpg")
    assert detect_layout(root) == "7scenes"
    scene, _ = read(root)
    assert scene.meta["layout"] == "7scenes" and scene.meta["intrinsics"] == "camera-intrinsics.txt"
    assert [f.name for f in scene.frames] == [f"seq-0{1 + (i >= 3)}_frame-{i:06d}" for i in range(6)]
    np.testing.assert_allclose(scene.frames[0].camera.K, RoomRig().K)
    assert scene.meta["alignment"]["source"] == "floor-plane"
    assert_z_up(scene)
    assert_reprojects(scene)
    one_seq, _ = read(root / "seq-02")  # a single sequence; camera-intrinsics.txt in the parent
    assert len(one_seq.frames) == 3 and one_seq.scene_id == "seq-02"


def test_7scenes_default_intrinsics_need_640x480(tmp_path):
    root = write_room_capture(tmp_path / "seq-01", "7scenes", intrinsics_file=None)
    with pytest.raises(DataError, match="no intrinsics"):
        read(root)


def test_tum_association(tmp_path):
    rig = RoomRig()
    root = write_room_capture(tmp_path / "rgbd_dataset_freiburg1_room", "tum")
    assert detect_layout(root) == "tum"
    scene, msgs = read(root)
    assert scene.meta["depth_scale"] == 5000.0 and len(scene.frames) == 6
    assert any("1 of 7 colour frames have no depth or pose" in m for m in msgs)
    assert scene.frames[0].name == "1305031102.000000"
    assert scene.frames[0].depth.max() < 4.0  # raw / 5000, not / 1000
    # the file's intrinsics win over the freiburg1 calibration named by the folder
    np.testing.assert_allclose(scene.frames[0].camera.K, rig.K)
    assert_z_up(scene)
    assert_reprojects(scene)
    # a tighter tolerance than the 10 ms depth offset associates nothing
    with pytest.raises(DataError, match="no frames found"):
        read(root, max_time_diff=0.001)
    (root / "camera-intrinsics.txt").unlink()
    scene, _ = read(root)
    assert "freiburg1" in scene.meta["intrinsics"]
    np.testing.assert_allclose(scene.frames[0].camera.K[0, 0], 517.3)


def test_scannet_export_axis_alignment(tmp_path):
    root = write_room_capture(tmp_path / "scene0707_00", "scannet", axis_alignment=True)
    assert detect_layout(root) == "scannet"
    scene, _ = read(root)
    al = scene.meta["alignment"]
    assert al["source"] == "axis-align"
    np.testing.assert_allclose(np.array(al["rotation"]), RoomRig().tilt[:3, :3].T, atol=1e-8)
    assert abs(floor_points(scene)[:, 2]).max() < 0.01  # axisAlignment undoes the tilt: floor at z = 0
    assert_reprojects(scene)
    # intrinsic_color.txt only (colour at twice the depth size): scaled onto the depth grid
    (root / "intrinsic" / "intrinsic_depth.txt").unlink()
    K2 = np.eye(4)
    K2[:3, :3] = RoomRig().K * [[2], [2], [1]]
    (root / "intrinsic" / "intrinsic_color.txt").write_text("\n".join(" ".join(map(str, r)) for r in K2))
    for p in (root / "color").iterdir():
        Image.open(p).resize((80, 60)).save(p)
    scene, _ = read(root)
    np.testing.assert_allclose(scene.frames[0].camera.K, RoomRig().K)
    assert scene.frames[0].rgb.shape == (30, 40, 3)


def test_gravity_world_and_per_frame(tmp_path):
    tilt = RoomRig().tilt[:3, :3]
    for kind in ("world", "frames"):
        root = write_room_capture(tmp_path / kind, "folders", color_format="jpg", gravity=kind)
        scene, _ = read(root)
        al = scene.meta["alignment"]
        assert al["source"] == "gravity"
        R = np.array(al["rotation"])
        np.testing.assert_allclose(R @ tilt @ [0, 0, 1.0], [0, 0, 1.0], atol=1e-6)
        assert_z_up(scene)
        assert_reprojects(scene)
    (root / "gravity.txt").write_text("0 0 0\n")
    with pytest.raises(DataError, match=r"gravity.txt: gravity: .* non-zero"):
        read(root)


def test_floor_plane_on_tilted_room_and_align_none(tmp_path):
    root = write_room_capture(tmp_path / "room", "folders")
    scene, _ = read(root)
    al = scene.meta["alignment"]
    assert al["source"] == "floor-plane" and al["floor_points"] > 100
    assert_z_up(scene)
    assert_reprojects(scene)
    raw, _ = read(root, align="none")
    assert raw.meta["alignment"]["source"] == "none"
    np.testing.assert_array_equal(raw.frames[0].camera.cam_to_world.round(6),
                                  RoomRig().cam_to_world(0).round(6))


def test_estimate_floor_plane_levels_a_tilted_floor():
    rng = np.random.default_rng(3)
    floor = np.c_[rng.uniform(-2, 2, (3000, 2)), rng.normal(0, 0.005, 3000)]
    table = np.c_[rng.uniform(0, 0.8, (800, 2)), np.full(800, 0.75)]  # a smaller plane above it
    ceiling = np.c_[rng.uniform(-2, 2, (1500, 2)), np.full(1500, 2.5)]
    wall = np.c_[np.full(1500, 2.0), rng.uniform(-2, 2, 1500), rng.uniform(0, 2.5, 1500)]
    pts = np.concatenate([floor, table, ceiling, wall])
    R = rotation_between([0, 0, 1.0], [0.2, 0.3, 0.9])  # about 21 degrees of tilt
    tilted = pts @ R.T + [1.0, 2.0, 3.0]
    up_hint = R @ rotation_between([0, 0, 1.0], [0.1, -0.2, 1.0]) @ [0, 0, 1.0]  # a rough hint
    normal, offset, count = estimate_floor_plane(tilted, up_hint=up_hint)
    true_up = R @ [0, 0, 1.0]
    assert np.degrees(np.arccos(normal @ true_up)) < 1.0
    assert count >= 2500 and offset == pytest.approx(true_up @ [1.0, 2.0, 3.0], abs=0.02)
    level = tilted @ rotation_between(normal, [0, 0, 1.0]).T
    assert level[:3000, 2].std() < 0.01
    assert estimate_floor_plane(wall) is None  # nothing near-horizontal


# ---- the command, and bad input refused before anything is written --------------------------

def test_convert_rgbd_command_writes_alignment(tmp_path, capsys):
    root = write_room_capture(tmp_path / "capture", "7scenes", color_format="jpg")
    out = tmp_path / "out"
    assert main(["convert", "rgbd", str(root), "--out", str(out), "--pixel-stride", "1"]) == 0
    doc = json.loads((out / "capture" / "scene.json").read_text())
    assert doc["meta"]["alignment"]["source"] == "floor-plane"
    assert np.array(doc["meta"]["alignment"]["rotation"]).shape == (3, 3)
    assert_z_up(read_scene(out / "capture"))


def _refused(tmp_path, capsys, root, *extra, needles):
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["convert", "rgbd", str(root), "--out", str(out), *extra])
    stderr = capsys.readouterr().err
    err = [line for line in stderr.replace("\r", "\n").splitlines()  # progress bars share stderr
           if line.startswith("liftgs convert:") and "warning:" not in line]
    assert rc == 2
    assert len(err) == 1, stderr
    for needle in needles:
        assert needle in err[0], err[0]
    assert "Traceback" not in stderr
    assert not out.exists()  # validated before anything was written


def test_zero_focal_length_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    (root / "camera-intrinsics.txt").write_text("0 20 20 15\n")
    _refused(tmp_path, capsys, root, needles=["camera-intrinsics.txt", "fx = 0", "positive"])


def test_negative_focal_length_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    _refused(tmp_path, capsys, root, "--fxfycxcy", "20", "-20", "20", "15", needles=["--fxfycxcy", "fy = -20"])
    np.savetxt(root / "camera-intrinsics.txt", RoomRig().K * [[-1], [1], [1]])  # 3x3, mirrored
    _refused(tmp_path, capsys, root, needles=["camera-intrinsics.txt", "fx = -20"])


def test_nan_pose_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    T = RoomRig().cam_to_world(2)
    T[1, 3] = np.nan
    np.savetxt(root / "pose" / "000002.txt", T)
    _refused(tmp_path, capsys, root, needles=["pose/000002.txt", "pose entry [1, 3]", "finite"])


def test_non_rigid_pose_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    T = RoomRig().cam_to_world(1)
    np.savetxt(root / "pose" / "000001.txt", T @ np.diag([1.0, 1.0, 1.1, 1.0]))  # scaled
    _refused(tmp_path, capsys, root, needles=["pose/000001.txt", "rotation is not orthonormal"])
    np.savetxt(root / "pose" / "000001.txt", T @ np.diag([1.0, -1.0, 1.0, 1.0]))  # mirrored
    _refused(tmp_path, capsys, root, needles=["pose/000001.txt", "determinant -1"])
    T[3] = [0, 0, 0.5, 1]
    np.savetxt(root / "pose" / "000001.txt", T)
    _refused(tmp_path, capsys, root, needles=["pose/000001.txt", "last row"])


def test_tum_bad_quaternion_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "tum", "tum")
    lines = (root / "groundtruth.txt").read_text().splitlines()
    parts = lines[3].split()
    parts[-1] = "3.0"  # qw: norm far from 1
    lines[3] = " ".join(parts)
    (root / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    _refused(tmp_path, capsys, root, needles=["groundtruth.txt", "line 4", "quaternion"])


def test_8bit_depth_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(root / "depth" / "000003.png")
    _refused(tmp_path, capsys, root, needles=["depth/000003.png", "depth", "16-bit", "8-bit"])


def test_unrecognised_folder_refused(tmp_path, capsys):
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "IMG_0001.jpg")
    _refused(tmp_path, capsys, root, needles=["photos", "not a recognised RGB-D folder", "7-Scenes", "TUM",
                                              "ScanNet", "--layout"])


def test_points_beyond_bounds_refused(tmp_path, capsys):
    root = write_room_capture(tmp_path / "cap", "folders")
    T = RoomRig().cam_to_world(0)
    T[:3, 3] *= 5000  # poses in millimetres
    np.savetxt(root / "pose" / "000000.txt", T)
    _refused(tmp_path, capsys, root, needles=["pose/000000.txt", "translation", "millimetres"])
