"""Generic RGB-D folder reader (7-Scenes and color/depth/pose layouts)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from liftgs.geometry import project_points
from liftgs.io.errors import DataError
from liftgs.testing.datasets import PlaneRig, write_rgbd_folder
from liftgs.io.rgbd import RGBDFolderConfig, read_intrinsics, read_rgbd_folder
from liftgs.io.scene_dir import read_scene, write_scene

pytestmark = pytest.mark.filterwarnings("ignore:.*no floor plane found")

SEVEN_SCENES_K = (15.0, 15.0, 10.0, 7.5)


def read(root, **kw):
    return read_rgbd_folder(RGBDFolderConfig(root=root, progress=False, **kw))


def test_7scenes_layout(tmp_path):
    root = write_rgbd_folder(tmp_path / "seq-01", layout="7scenes")
    scene = read(root, fxfycxcy=SEVEN_SCENES_K, invalid_depth=65535)
    assert scene.scene_id == "seq-01" and scene.meta["layout"] == "7scenes"
    assert [f.name for f in scene.frames] == [f"frame-{i:06d}" for i in range(4)]
    f0 = scene.frames[0]
    assert f0.depth[0, 0] == 0.0 and f0.depth[5, 5] == pytest.approx(2.0)
    np.testing.assert_allclose(scene.points[:, 1], 2.0, atol=1e-5)  # the wall, world as recorded
    rig = PlaneRig()
    np.testing.assert_allclose(f0.camera.position, rig.cam_to_world(0)[:3, 3], atol=1e-12)
    uv, z = project_points(scene.points, f0.camera.K, f0.camera.viewmat)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 20) & (uv[:, 1] >= 0) & (uv[:, 1] < 15)
    np.testing.assert_allclose(z[inside], 2.0, atol=1e-5)
    assert scene.instance_ids is None and scene.objects == {}
    assert scene.meta["alignment"]["source"] == "none"  # a lone wall: no floor to level by
    # 7-Scenes' 65535 is invalid by default; with invalid_depth=0 (none but 0) it would be a 65.5 m
    # wall, which max_depth drops from the cloud
    far = read(root, fxfycxcy=SEVEN_SCENES_K, invalid_depth=0)
    assert far.frames[0].depth[0, 0] == pytest.approx(65.535)
    assert np.abs(far.points[:, 1] - 2.0).max() < 1e-5


def test_folders_layout_round_trip(tmp_path):
    root = write_rgbd_folder(tmp_path / "capture", layout="folders", depth_scale=5000.0, invalid_value=None)
    scene = read(root, depth_scale=5000.0, frame_stride=2, image_size=(10, 8))
    assert [f.name for f in scene.frames] == ["000000", "000002"]
    assert scene.frames[0].rgb.shape == (8, 10, 3)
    np.testing.assert_allclose(scene.points[:, 1], 2.0, atol=1e-5)
    back = read_scene(write_scene(scene, tmp_path / "out"))
    np.testing.assert_array_equal(back.points, scene.points)
    np.testing.assert_array_equal(back.frames[1].depth, scene.frames[1].depth)
    np.testing.assert_array_equal(back.frames[1].rgb, scene.frames[1].rgb)


def test_world_to_camera_poses(tmp_path):
    root = write_rgbd_folder(tmp_path / "c", layout="folders")
    rig = PlaneRig()
    for i in range(4):  # rewrite every pose as world->camera
        T = np.linalg.inv(rig.cam_to_world(i))
        (root / "pose" / f"{i:06d}.txt").write_text("\n".join(" ".join(repr(float(x)) for x in r) for r in T))
    scene = read(root, poses_world_to_camera=True)
    np.testing.assert_allclose(scene.frames[2].camera.position, rig.cam_to_world(2)[:3, 3], atol=1e-12)


def test_intrinsics_formats(tmp_path):
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    (tmp_path / "k3.txt").write_text("\n".join(" ".join(map(str, r)) for r in K))
    K4 = np.eye(4)
    K4[:3, :3] = K
    (tmp_path / "k4.txt").write_text("\n".join(" ".join(map(str, r)) for r in K4))
    (tmp_path / "k.txt").write_text("500 510 320 240")
    for name in ("k3.txt", "k4.txt", "k.txt"):
        np.testing.assert_array_equal(read_intrinsics(tmp_path / name), K)
    (tmp_path / "bad.txt").write_text("500 510 320")
    with pytest.raises(DataError, match="bad.txt.*found 3"):
        read_intrinsics(tmp_path / "bad.txt")


def test_rgbd_bad_input(tmp_path):
    root = write_rgbd_folder(tmp_path / "seq", layout="7scenes")
    with pytest.raises(DataError, match="no intrinsics"):
        read(root)
    (root / "frame-000001.pose.txt").unlink()
    with pytest.raises(DataError, match=r"frame-000001.pose.txt.*missing"):
        read(root, fxfycxcy=SEVEN_SCENES_K)
    root = write_rgbd_folder(tmp_path / "seq2", layout="7scenes")
    (root / "frame-000003.pose.txt").write_text("-inf " * 16)  # the "tracking lost" marker: skipped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = read(root, fxfycxcy=SEVEN_SCENES_K)
    assert len(scene.frames) == 3
    assert any("frame-000003.pose.txt" in str(w.message) for w in caught)
    Image.fromarray(np.zeros((16, 20), np.uint16)).save(root / "frame-000002.depth.png")
    with pytest.raises(DataError, match=r"frame-000002.depth.png.*20x16.*mismatched"):
        read(root, fxfycxcy=SEVEN_SCENES_K)
    with pytest.raises(DataError, match="RGB-D folder is missing"):
        read(tmp_path / "nope", fxfycxcy=SEVEN_SCENES_K)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a recognised RGB-D folder"):
        read(tmp_path / "empty", fxfycxcy=SEVEN_SCENES_K)
    with pytest.raises(DataError, match="expected color/"):
        read(tmp_path / "empty", fxfycxcy=SEVEN_SCENES_K, layout="folders")
    with pytest.raises(ValueError, match="depth_scale"):
        RGBDFolderConfig(root=root, depth_scale=0)
