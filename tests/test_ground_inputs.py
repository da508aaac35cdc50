"""`liftgs ground` on clouds unlike its training scenes: warnings, voxel downsampling of large
clouds (masks mapped back to every point), refusal of absurd coordinates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftgs.clouds import SLACK, SYNTHETIC_RANGES, cloud_stats, voxel_downsample, voxel_grid
from liftgs.ground import MIN_MASK_POINTS, GroundConfig, Timer, run_ground
from liftgs.models.liftgs.grounding import ground_points
from liftgs.io.errors import DataError
from liftgs.io.ply import read_point_cloud, write_point_cloud
from liftgs.models.liftgs import build_liftgs

from helpers.model_inputs import TEXT_DIM, small_config


@pytest.fixture(scope="module")
def encoder():
    from liftgs.text import load_text_encoder

    return load_text_encoder(f"hash-{TEXT_DIM}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return build_liftgs(small_config()).save_pretrained(tmp_path_factory.mktemp("ground_model") / "run" / "model")


@pytest.fixture(scope="module")
def room():
    """A `quick` synthetic room: the kind of scene the model is trained on."""
    from liftgs.synth.config import QUICK
    from liftgs.synth.generate import generate_room

    scene = generate_room(QUICK, 3)
    return scene.points, scene.colors


def _ground(path, model_dir, encoder, out, **kw):
    cfg = dict(scene=path, phrase="the red chair", checkpoint=model_dir, out=out, views=0, threshold=0.01,
               component_radius=0.0)
    return run_ground(GroundConfig(**{**cfg, **kw}), text_encoder=encoder)


def _save(tmp_path, points, colors, name="cloud.ply"):
    path = tmp_path / name
    if name.endswith(".ply"):
        write_point_cloud(path, points, colors)
    else:
        np.save(path, np.concatenate([points, colors], axis=1).astype(np.float32))
    return path


def test_training_like_room_gives_no_warning(tmp_path, room, model_dir, encoder, capsys):
    res = _ground(_save(tmp_path, *room), model_dir, encoder, tmp_path / "out")
    assert res.warnings == [] and "warning" not in capsys.readouterr().err
    assert int(res.masks[0].sum()) >= MIN_MASK_POINTS and res.model_points == len(room[0])


def _yup(p, c):
    return p[:, [0, 2, 1]] * np.float32([1, 1, -1]), c


CRAFTED = {  # a change to the training-like room -> the quantity its warning names
    "point count": lambda p, c: (p[::10], c[::10]),
    "horizontal extent": lambda p, c: (p * np.float32([3, 3, 1]), c),
    "vertical extent": lambda p, c: (p * np.float32([1, 1, 3]), c),
    "density": lambda p, c: (np.repeat(p[::4], 8, axis=0), np.repeat(c[::4], 8, axis=0)),
    "gravity": _yup,
    "upside down": lambda p, c: (p * np.float32([-1, 1, -1]), c),
    "colour:": lambda p, c: (p, np.zeros_like(c)),
    "colour range": lambda p, c: (p, c * 1.5 - 0.2),
}


@pytest.mark.parametrize("quantity", list(CRAFTED))
def test_each_far_quantity_gets_one_warning_line(tmp_path, room, model_dir, encoder, capsys, quantity):
    points, colors = CRAFTED[quantity](*room)
    res = _ground(_save(tmp_path, points, colors), model_dir, encoder, tmp_path / "out")
    expected = "gravity" if quantity == "upside down" else quantity
    assert [w for w in res.warnings if not w.startswith("top mask")] == [
        w for w in res.warnings if w.startswith(expected)] != []
    assert len(res.warnings) <= 2  # the quantity's line (+ a tiny top mask of the random model)
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if expected in line] == [f"liftgs ground: warning: {w}" for w in res.warnings
                                                         if w.startswith(expected)]
    line = next(w for w in res.warnings if w.startswith(expected))
    assert "expected" in line and "\n" not in line
    if quantity == "density":  # the remedy: ground the voxel means, as for a large cloud
        assert line.endswith("; --max-points 0 grounds its voxel means")
        again = _ground(tmp_path / "cloud.ply", model_dir, encoder, tmp_path / "again", max_points=0)
        assert not any(w.startswith("density") for w in again.warnings) and again.model_points < len(points)


def test_warnings_name_value_and_expected_range(room):
    from liftgs.clouds import distribution_warnings

    p, c = room
    (line,) = distribution_warnings(cloud_stats(p[::10], c[::10]), SYNTHETIC_RANGES, "synthetic benchmark")
    lo, hi = SYNTHETIC_RANGES["num_points"]
    assert line == (f"point count {len(p[::10]):,} is outside the expected {lo / SLACK['num_points']:,.0f}-"
                    f"{hi * SLACK['num_points']:,.0f} (synthetic benchmark: {lo:,}-{hi:,})")
    assert cloud_stats(*_yup(p, c)).up_score < 0.5 <= cloud_stats(p, c).up_score


def test_loader_clipping_and_tiny_top_mask_are_reported(tmp_path, room, model_dir, encoder):
    p, c = room
    src = _save(tmp_path, p, c * 255 * 300, "sixteen_bit.npy")  # 16-bit colours: /255 leaves them > 1
    res = _ground(src, model_dir, encoder, tmp_path / "a")
    stored = (c * 255 * 300).astype(np.float32) / np.float32(255)
    lo, hi = stored.min(), stored.max()
    assert [w for w in res.warnings if "clipped" in w] == [
        f"{src}: columns 3-5 (rgb) hold {lo:.3g}..{hi:.3g} after scaling to [0, 1] (0-255 detected by "
        "any value > 1); clipped"]
    few = _save(tmp_path, p[:12], c[:12], "few.npy")
    res = _ground(few, model_dir, encoder, tmp_path / "b")
    assert any(w.startswith(f"top mask: {int(res.masks[0].sum())} points (of 12), expected >= 20")
               for w in res.warnings)


def test_run_ranges_replace_the_synthetic_defaults(tmp_path, room, model_dir, encoder):
    """A pre-training run's data_stats set the expected ranges; a fine-tuning run follows its init."""
    import shutil

    pre = tmp_path / "pre"
    shutil.copytree(model_dir, pre / "model")
    stats = {**SYNTHETIC_RANGES, "num_points": [100, 200]}
    (pre / "config.json").write_text(json.dumps({"recipe": "pretrain", "data_stats": stats}))
    ft = tmp_path / "ft"
    shutil.copytree(model_dir, ft / "model")
    (ft / "config.json").write_text(json.dumps({"recipe": "finetune",
                                                "finetune": {"init": str(pre), "task": "instseg"}}))
    src = _save(tmp_path, *room)
    for run in (pre, ft):
        res = _ground(src, run / "model", encoder, tmp_path / run.name, mode="phrase")
        assert [w for w in res.warnings if not w.startswith("top mask")] == [
            f"point count {len(room[0]):,} is outside the expected 25-800 (pre-training scenes: 100-200)"]


def test_pretrain_records_its_data_stats(dataset, tmp_path):
    from helpers.recipe_configs import pretrain_config
    from liftgs.clouds import data_ranges
    from liftgs.io.scene_dir import read_scene
    from liftgs.recipes.pretrain import run_pretrain

    run_pretrain(pretrain_config(dataset, tmp_path / "run", steps=1, ckpt_every=1, image_size=16, num_pixels=64))
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    scenes = [read_scene(dataset / "data" / f"room{i}", load_frames=False) for i in range(3)]  # the train split
    assert doc["data_stats"] == data_ranges((s.points, s.colors) for s in scenes)
    assert doc["data_stats"]["num_scenes"] == 3 and doc["data_stats"]["density"][0] >= 1.0


def _dense_cloud(room, copies: int, seed: int = 0):
    """The room seen by a dense sensor: ``copies`` jittered copies of every point."""
    p, c = room
    rng = np.random.default_rng(seed)
    pts = np.repeat(p, copies, axis=0) + rng.uniform(-0.02, 0.02, (len(p) * copies, 3)).astype(np.float32)
    return pts.astype(np.float32), np.repeat(c, copies, axis=0)


def test_large_cloud_is_grounded_on_voxel_means_and_mapped_back(tmp_path, room, model_dir, encoder, capsys):
    points, colors = _dense_cloud(room, 300_000 // len(room[0]) + 1)
    P = len(points)
    assert P >= 300_000
    src = _save(tmp_path, points, colors, "dense.npy")
    out = tmp_path / "out"
    res = _ground(src, model_dir, encoder, out, max_points=100_000, views=1, image_size=32, threshold=0.5,
                  component_radius=0.1)
    grid = voxel_grid(points, 0.05)
    V = len(grid.counts)
    assert res.model_points == V < P and f"grounding their {V:,} voxel means" in capsys.readouterr().err
    assert res.masks.shape == (len(res.scores), P) and res.point_mask_ids.shape == (P,)
    # every point has a label and the points of a voxel agree
    pairs = np.unique(np.stack([grid.inverse, res.point_mask_ids]), axis=1)
    assert pairs.shape[1] == V and 0 < int(res.masks[0].sum()) < P and len(np.unique(res.point_mask_ids)) > 1
    # the same as grounding the voxel means directly
    ds_points, ds_colors, inverse = voxel_downsample(points, colors, 0.05)
    cfg = GroundConfig(scene=src, phrase="the red chair", threshold=0.5, component_radius=0.1)
    model = build_liftgs(small_config())
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    direct = ground_points(model.eval(), encoder, ds_points, ds_colors, cfg, "phrase", Timer())
    np.testing.assert_array_equal(res.masks, direct.masks[:, inverse])
    np.testing.assert_array_equal(res.point_mask_ids, direct.point_mask_ids[inverse])
    np.testing.assert_allclose(res.scores, direct.scores, rtol=0, atol=0)
    # the outputs cover every input point
    doc = json.loads((out / "grounding.json").read_text())
    assert doc["num_points"] == P and doc["point_mask_ids"] == res.point_mask_ids.tolist()
    assert [m["num_points"] for m in doc["masks"]] == [int(m.sum()) for m in res.masks]
    np.testing.assert_allclose(doc["masks"][0]["box_min"], points[res.masks[0]].min(0), rtol=1e-6)
    assert read_point_cloud(out / "highlight.ply").points.shape == (P, 3)
    assert (out / "view_0.png").is_file()


def test_voxel_means_stay_in_their_voxels(room):
    points, colors = _dense_cloud(room, 4, seed=1)
    means, mean_colors, inverse = voxel_downsample(points, colors, 0.05)
    grid = voxel_grid(points, 0.05)
    np.testing.assert_array_equal(np.floor(means / np.float32(0.05)).astype(np.int64), grid.cells)
    assert np.bincount(inverse).tolist() == grid.counts.tolist() and len(means) < len(points)
    for v in (0, len(means) // 2, len(means) - 1):
        np.testing.assert_allclose(means[v], points[inverse == v].mean(0), rtol=1e-6)
        np.testing.assert_allclose(mean_colors[v], colors[inverse == v].mean(0), rtol=1e-6)


def _one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("case", ["huge.npy", "nan_xyz.npy", "nan_rgb.npy", "nan.ply", "nan_rgb.ply", "huge.ply",
                                  "span.npy"])
def test_absurd_coordinates_are_refused_before_writing(tmp_path, room, model_dir, encoder, case):
    p, c = room[0][:500].copy(), room[1][:500].copy()
    field = {"huge.npy": "columns 0-2 (xyz): coordinates beyond ±1e+05 m", "nan_xyz.npy": "columns 0-2 (xyz)",
             "nan_rgb.npy": "columns 3-5 (rgb)", "nan.ply": "field x/y/z", "nan_rgb.ply": "field red/green/blue",
             "huge.ply": "field x/y/z: coordinates beyond",
             "span.npy": "more than 2^62 cells"}[case]
    if case.startswith("huge"):
        p[7, 2] = 1e9
    elif case.startswith("nan_rgb"):
        c[3, 1] = np.nan
    elif case.startswith("nan"):
        p[3, 0] = np.nan
    else:  # inside ±1e5 m, but a grid no int64 key can index
        p[0], p[1] = 9e4, -9e4
    path = tmp_path / case
    if case.endswith(".ply"):  # write_point_cloud writes what it is given; NaN included
        with np.errstate(invalid="ignore"):  # NaN colours -> uchar
            write_point_cloud(path, p, c)
    else:
        np.save(path, np.concatenate([p, c], axis=1).astype(np.float32))
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        _ground(path, model_dir, encoder, out)
    assert str(path) in _one_line(info.value) and field in str(info.value)
    assert not out.exists()


def test_scene_directory_with_absurd_coordinates_is_refused(tmp_path, model_dir, encoder):
    from liftgs.io.scene_dir import write_scene
    from liftgs.testing import fabricate_scene

    scene, _ = fabricate_scene("far", seed=0)
    scene.points = scene.points + np.float32([0, 0, 2e5])
    folder = write_scene(scene, tmp_path / "data")
    with pytest.raises(DataError) as info:
        _ground(folder, model_dir, encoder, tmp_path / "out")
    assert _one_line(info.value).startswith(f"{folder / 'points.ply'}: field x/y/z: coordinates beyond")
    assert not (tmp_path / "out").exists()
