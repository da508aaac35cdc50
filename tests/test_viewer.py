"""`liftgs view` without a browser: what it draws (subsets, poses, boxes, label overlays), the
inputs it refuses at the door, and the viewer driven through its methods with real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liftgs.types import Camera
from liftgs.viewer.layers import (BOX_EDGES, box_segments, camera_pose, display_subset, label_overlay,
                                  segment_colors, spread_indices)


# ---------------------------------------------------------------------- layers
def test_spread_and_display_subsets():
    assert spread_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_indices(3, 40).tolist() == [0, 1, 2] and spread_indices(5, 0).tolist() == list(range(5))
    sub = display_subset(1000, 100)
    assert len(sub) == 100 and len(set(sub.tolist())) == 100 and (np.diff(sub) > 0).all()
    assert np.array_equal(sub, display_subset(1000, 100))  # the same subset every run


def test_camera_pose_is_the_camera_to_world_transform():
    from liftgs.geometry import look_at
    from scipy.spatial.transform import Rotation

    K = np.array([[100.0, 0, 80], [0, 120.0, 60], [0, 0, 1]])
    cam = Camera(K, look_at((1.0, -2.0, 1.5), (0.5, 0.5, 0.2)), 160, 120)
    wxyz, position, fov, aspect = camera_pose(cam)
    R = Rotation.from_quat(np.r_[wxyz[1:], wxyz[:1]]).as_matrix()
    np.testing.assert_allclose(position, (1.0, -2.0, 1.5), atol=1e-9)
    np.testing.assert_allclose(R, cam.cam_to_world[:3, :3], atol=1e-9)
    assert fov == pytest.approx(2 * np.arctan(60 / 120)) and aspect == pytest.approx(160 / 120)


def test_box_segments_are_the_twelve_edges():
    boxes = np.array([[0, 0, 0, 1, 2, 3], [5, 5, 5, 6, 6, 6]], float)
    seg = box_segments(boxes)
    assert seg.shape == (24, 2, 3) and len(BOX_EDGES) == 12
    lengths = np.sort(np.linalg.norm(seg[:12, 1] - seg[:12, 0], axis=1))
    np.testing.assert_allclose(lengths, [1] * 4 + [2] * 4 + [3] * 4)
    assert box_segments(np.zeros((0, 6))).shape == (0, 2, 3)


def test_label_overlay_tints_segments_and_darkens_the_rest():
    rgb = np.full((6, 8, 3), 100, np.uint8)
    seg = np.full((6, 8), -1, np.int32)
    seg[:3, :4], seg[3:, 4:] = 0, 1
    out = label_overlay(rgb, seg)
    colors = segment_colors(2)
    assert not np.array_equal(colors[0], colors[1])
    assert (out[5, 0] == 60).all()  # unlabelled: darkened
    inner = out[4, 6].astype(int)  # inside segment 1, off its outline
    np.testing.assert_allclose(inner, 0.45 * 100 + 0.55 * colors[1].astype(float), atol=1)
    assert (out[2, 3] == 255).all()  # the outline between segment 0 and the unlabelled pixels
    with pytest.raises(ValueError, match="does not match"):
        label_overlay(rgb, seg[:, :4])


# ---------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from liftgs.testing import write_rooms

    return write_rooms(tmp_path_factory.mktemp("view"), count=1, val=0)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from liftgs.models import build_model
    from liftgs.testing import EMBEDDING_DIM

    root = tmp_path_factory.mktemp("models")
    dirs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        dirs.append(build_model("liftgs", "tiny", EMBEDDING_DIM).save_pretrained(root / f"model{seed}"))
    return dirs


@pytest.fixture(autouse=True)
def no_default_model(monkeypatch, tmp_path):
    """`liftgs ground`'s default model, looked for when no --checkpoint is given, is absent."""
    from liftgs.viewer import app

    monkeypatch.setattr(app, "default_checkpoints", lambda: (tmp_path / "runs" / "demo", tmp_path / "runs" / "pre"))


def _config(room, **kw):
    from liftgs.viewer import ViewConfig

    return ViewConfig(scene=kw.pop("scene", room / "data" / "room0"), port=0, **kw)


def _quiet(_message: str) -> None:
    pass


def test_missing_scene_and_bad_checkpoint_are_refused(tmp_path, room, model_dirs):
    from liftgs.io.errors import DataError
    from liftgs.testing import RoomTextEncoder
    from liftgs.train.checkpoint import CheckpointError
    from liftgs.viewer import load_inputs

    with pytest.raises(DataError, match="no such scene directory"):
        load_inputs(_config(room, scene=tmp_path / "nowhere"), log=_quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=str(tmp_path / "empty")):
        load_inputs(_config(room, checkpoint=(tmp_path / "empty",)), RoomTextEncoder(), log=_quiet)
    with pytest.raises(DataError, match="no such pseudo-label folder"):
        load_inputs(_config(room, labels=tmp_path / "nolabels"), log=_quiet)
    with pytest.raises(DataError, match="no pseudo-labels for scene 'room0'"):
        load_inputs(_config(room, labels=tmp_path / "empty"), log=_quiet)
    from liftgs.text import load_text_encoder

    with pytest.raises(ValueError, match="gives 384-d vectors"):
        load_inputs(_config(room, checkpoint=(model_dirs[0],)), load_text_encoder("hash-384"), log=_quiet)


def test_labels_need_a_scene_directory(tmp_path, room):
    from liftgs.io.errors import DataError
    from liftgs.io.ply import write_point_cloud
    from liftgs.viewer import load_inputs

    cloud = tmp_path / "cloud.ply"
    write_point_cloud(cloud, np.random.default_rng(0).uniform(0, 2, (500, 3)).astype(np.float32),
                      np.full((500, 3), 0.5, np.float32))
    inputs = load_inputs(_config(room, scene=cloud), log=_quiet)  # a bare cloud: no frames, no error
    assert len(inputs.points) == 500 and inputs.cameras == []
    with pytest.raises(DataError, match="needs a scene directory"):
        load_inputs(_config(room, scene=cloud, labels=room / "labels"), log=_quiet)


def test_without_a_model_the_grounding_controls_say_so(room):
    from liftgs.viewer import app, launch_viewer

    viewer = launch_viewer(_config(room), log=_quiet)
    try:
        assert viewer.inputs.models == [] and "cannot be loaded" in viewer.inputs.model_note
        assert viewer.ground_button.disabled and viewer.model_dropdown.value == app.NO_MODEL
        assert "start with --checkpoint" in viewer.results.content
        with pytest.raises(ValueError, match="no model"):
            viewer.ground("the red chair")
    finally:
        viewer.stop()


# ---------------------------------------------------------------------- the viewer
@pytest.fixture(scope="module")
def viewer(room, model_dirs):
    from liftgs.testing import RoomTextEncoder
    from liftgs.viewer import launch_viewer

    v = launch_viewer(_config(room, checkpoint=tuple(model_dirs), labels=room / "labels", threshold=0.3),
                      text_encoder=RoomTextEncoder(), log=_quiet)
    yield v
    v.stop()


def test_viewer_serves_on_loopback(viewer):
    import urllib.request

    assert viewer.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(viewer.url, timeout=10) as page:
        assert page.status == 200 and b"<div id=\"root\">" in page.read()


def test_ground_paints_the_masks_and_lists_scores(viewer):
    from liftgs.ground import highlight_colors

    result = viewer.ground("the red chair")
    P = len(viewer.inputs.points)
    assert result.point_mask_ids.shape == (P,) and len(result.scores) == len(result.masks) <= 3
    painted = highlight_colors(viewer.inputs.colors, result.point_mask_ids)
    np.testing.assert_array_equal(viewer.points_handle.colors, (painted * 255).round().astype(np.uint8))
    boxes = viewer.server.scene.get_handle_by_name("/grounding/boxes")
    assert (boxes is not None) == (len(result.boxes) > 0)
    for score in result.scores:
        assert f"{score:.3f}" in viewer.results.content
    assert viewer.last_result is result and not viewer.clear_button.disabled
    with pytest.raises(ValueError, match="empty"):
        viewer.ground("   ")
    viewer.clear_grounding()
    np.testing.assert_array_equal(viewer.points_handle.colors, viewer.base_rgb)
    assert viewer.server.scene.get_handle_by_name("/grounding/boxes") is None


def test_model_picker_switches_models(viewer, model_dirs):
    labels = [c.label for c in viewer.inputs.models]
    assert labels == [str(d) for d in model_dirs]
    first = viewer.ground("the blue lamp")
    viewer.select_model(labels[1])
    assert viewer.model_choice.model_dir == model_dirs[1] and viewer.last_result is None
    second = viewer.ground("the blue lamp")
    assert labels[1] in viewer.results.content
    assert not (np.array_equal(first.scores, second.scores) and np.array_equal(first.point_mask_ids,
                                                                                 second.point_mask_ids))
    with pytest.raises(ValueError, match="no model"):
        viewer.select_model("elsewhere")
    viewer.select_model(labels[0])


def test_gaussians_toggle(viewer):
    viewer.show_gaussians(True)
    try:
        assert viewer.gaussian_toggle.value
        assert viewer.server.scene.get_handle_by_name("/scene/gaussians") is not None
        means, cov, rgbs, opacities = viewer._gaussian_cache[viewer.model_choice.label]
        assert means.shape == (len(viewer.inputs.points), 3) and cov.shape == (len(means), 3, 3)
        assert np.isfinite(cov).all() and (np.linalg.eigvalsh(cov) > -1e-9).all()
    finally:
        viewer.show_gaussians(False)
    assert viewer.server.scene.get_handle_by_name("/scene/gaussians") is None


def test_frame_shows_its_pseudo_labels(viewer, room):
    from liftgs.teachers.store import PseudoLabelStore

    assert viewer.server.scene.get_handle_by_name("/frames/000002") is not None  # every frustum drawn
    viewer.show_frame(2)
    assert viewer.frame_index == 2 and viewer.frame_slider.value == 2
    labels = PseudoLabelStore(room / "labels").get("room0", "000002")
    assert f"{labels.num_segments} segments" in viewer.label_text.content
    assert viewer.label_image.image.shape[2] == 3 and max(viewer.label_image.image.shape[:2]) >= 240
    assert viewer.server.scene.get_handle_by_name("/frames/selected") is not None


def test_cli_refuses_bad_inputs_on_one_line(tmp_path, room, capsys):
    from liftgs.cli import main

    assert main(["view", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error on one line
    assert err[-1] == f"liftgs view: {tmp_path / 'nowhere'}: no such scene directory or point-cloud file"
    assert "Traceback" not in "\n".join(err)
    assert main(["view", str(room / "data" / "room0"), "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("liftgs view: ") and str(tmp_path) in err[-1]
    assert main(["view", str(room / "data" / "room0"), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
