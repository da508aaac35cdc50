"""`liftgs ground` end to end on an untrained tiny model: files written, bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftgs.ground import DIM, GroundConfig, highlight_colors, orbit_cameras, run_ground
from liftgs.io.ply import read_point_cloud, write_point_cloud
from liftgs.models.liftgs import ModelConfig, build_liftgs


def FakeEncoder():
    """The library's hashing stand-in encoder (384-d, no model to load)."""
    from liftgs.text import load_text_encoder

    return load_text_encoder("hash-384")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = build_liftgs(ModelConfig.tiny(text_dim=384))
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "model")


def _room(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pts = rng.uniform([0, 0, 0], [3, 3, 1.5], size=(n, 3)).astype(np.float32)
    return pts, rng.uniform(0, 1, size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ply", "npy"])
def test_ground_writes_outputs(tmp_path, model_dir, kind):
    pts, cols = _room()
    if kind == "ply":
        src = tmp_path / "cloud.ply"
        write_point_cloud(src, pts, cols)
    else:
        src = tmp_path / "cloud.npy"
        np.save(src, np.concatenate([pts, cols * 255], axis=1).astype(np.float32))
    out = tmp_path / "out"
    cfg = GroundConfig(scene=src, phrase="the red chair", checkpoint=model_dir, out=out, views=2,
                       image_size=48, threshold=0.3)
    res = run_ground(cfg, text_encoder=FakeEncoder())
    doc = json.loads((out / "grounding.json").read_text())
    assert doc["phrase"] == "the red chair" and doc["num_points"] == len(pts)
    ids = np.load(out / "point_mask_ids.npy")
    assert ids.shape == (len(pts),) and ids.min() >= -1
    assert len(doc["masks"]) == len(res.scores) <= 3
    for r, m in enumerate(doc["masks"]):  # boxes hold exactly the mask's points
        sel = res.masks[r]
        np.testing.assert_allclose(m["box_min"], pts[sel].min(0), rtol=1e-6)
        assert m["num_points"] == int(sel.sum())
    assert (out / "view_0.png").is_file() and (out / "view_1.png").is_file()
    assert read_point_cloud(out / "highlight.ply").points.shape == (len(pts), 3)
    assert {"model", "load points"} <= set(res.timings)


def test_auto_mode_follows_the_run(tmp_path, model_dir):
    """A pre-training run's model grounds zero-shot (decoder + Gaussian feature relevance); a
    fine-tuned one by expression or phrase, by its task; a bare model folder by phrase."""
    from liftgs.models.liftgs.grounding import resolve_mode

    def run(doc):
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        (d / "model").mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(doc))
        return d / "model"

    cfg = GroundConfig(scene=tmp_path, phrase="a chair")
    assert resolve_mode(cfg, run({"recipe": "pretrain"})) == "zero-shot"
    assert resolve_mode(cfg, run({"recipe": "finetune", "finetune": {"task": "refer"}})) == "expression"
    assert resolve_mode(cfg, run({"recipe": "finetune", "finetune": {"task": "instseg"}})) == "phrase"
    assert resolve_mode(cfg, tmp_path / "elsewhere" / "model") == "phrase"
    pts, cols = _room(800)
    src = tmp_path / "cloud.npy"
    np.save(src, np.concatenate([pts, cols * 255], axis=1).astype(np.float32))
    plain, zero = (run_ground(GroundConfig(scene=src, phrase="a red chair", checkpoint=model_dir, mode=mode,
                                           out=tmp_path / mode, views=0, threshold=0.3, component_radius=0),
                              text_encoder=FakeEncoder()) for mode in ("phrase", "zero-shot"))
    assert (zero.scores <= plain.scores.max() + 1e-12).all()  # relevance factors are <= 1
    assert not np.allclose(np.sort(zero.scores), np.sort(plain.scores))


def test_point_ids_prefer_best_mask():
    cols = np.full((4, 3), 0.5, np.float32)
    ids = np.array([-1, 0, 1, 0])
    painted = highlight_colors(cols, ids)
    assert np.allclose(painted[1], painted[3]) and not np.allclose(painted[1], painted[2])
    assert np.allclose(painted[0], 0.5 * DIM)  # the rest keeps its own colour, slightly dimmed
    red = highlight_colors(np.array([[0.8, 0.1, 0.1]], np.float32), np.array([-1]))
    assert np.allclose(red, [[0.8 * DIM, 0.1 * DIM, 0.1 * DIM]])


def test_orbit_cameras_see_the_scene():
    pts, _ = _room()
    from liftgs.geometry import project_points

    for cam in orbit_cameras(pts, 4, 64):
        uv, z = project_points(pts.mean(0, keepdims=True), cam.K, cam.viewmat)
        assert z[0] > 0 and 0 <= uv[0, 0] < 64 and 0 <= uv[0, 1] < 64


def test_bad_inputs(tmp_path, model_dir, capsys):
    with pytest.raises(ValueError, match="phrase is empty"):
        GroundConfig(scene=tmp_path, phrase="  ")
    with pytest.raises(ValueError, match="component-radius"):
        GroundConfig(scene=tmp_path, phrase="a chair", component_radius=-0.1)
    from liftgs.cli import main as cli_main

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 4), np.float32))
    assert cli_main(["ground", str(bad), "a chair", "--checkpoint", str(model_dir)]) == 2
    assert "bad.npy" in capsys.readouterr().err
    assert cli_main(["ground", str(tmp_path / "missing.ply"), "a chair", "--checkpoint", str(model_dir)]) == 2
    assert "missing.ply" in capsys.readouterr().err
    assert cli_main(["ground", str(bad), "a chair", "--checkpoint", str(tmp_path / "nope")]) == 2
