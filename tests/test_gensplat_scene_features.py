"""Per-scene inputs of GenSplat's stage III and GAFS (liftgs.recipes.gensplat_scenes) on fabricated
rooms with stand-in reconstructions and a fresh tiny stage-II GenSplat: Gaussian labels, the
cache (write, reload, recompute on other settings / another model / a damaged file), the
per-view queries (visibility from the instance maps and from the rendered Gaussians,
visible-Gaussian sets, view context) and one-line input errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from liftgs.io.errors import DataError
from liftgs.recipes import gensplat_scenes as gsc
from liftgs.recipes.gensplat_scenes import (SceneCacheConfig, SceneFeatureCache, gaussian_labels, model_fingerprint,
                                            render_view_stats, rendered_object_pixels)
from liftgs.testing.rooms import EMBEDDING_DIM

SMALL = SceneCacheConfig(image_size=32, max_per_view=64)


def _stage_two(seed: int):
    from liftgs.models import build_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model("gensplat", "tiny", EMBEDDING_DIM).eval()


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Two fabricated rooms, their stand-in reconstructions and a tiny stage-II model."""
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("scenefeat"), count=2, val=0)
    write_point_recon(root / "data", root / "recon")
    return root


@pytest.fixture(scope="module")
def stage2():
    return _stage_two(0)


@pytest.fixture(scope="module")
def feats(rooms, stage2):
    """room0's features, computed in memory only."""
    return SceneFeatureCache(stage2, rooms / "recon", None, SMALL).get(rooms / "data" / "room0", "room0")


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of compute_scene_features made by the cache."""
    calls = []
    real = gsc.compute_scene_features

    def wrapped(*args, **kw):
        calls.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(gsc, "compute_scene_features", wrapped)
    return calls


def _assert_same(a, b):
    ta, tb = a.tensors(), b.tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    assert (a.scene_id, a.width, a.height) == (b.scene_id, b.width, b.height)


# ------------------------------------------------------------------------------- labels
def test_gaussian_labels_take_the_nearest_point_within_the_radius():
    points = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [5.0, 5, 5]])
    ids = np.array([3, 7, -1, 9])
    means = np.array([[0.05, 0, 0],  # nearest point 0 (id 3), 0.05 away
                      [0.9, 0.02, 0],  # nearest point 1 (id 7), ~0.1 away
                      [0.0, 0.97, 0],  # nearest point 2: unlabelled point -> -1
                      [0.5, 0.01, 0],  # between 0 and 1, nearer 0 but 0.5 away: too far
                      [5.0, 5, 5.0625]])  # point 3 at 0.0625 (exact in binary): at the radius counts
    got = gaussian_labels(means, points, ids, radius=0.12)
    assert got.dtype == np.int64 and got.tolist() == [3, 7, -1, -1, 9]
    assert gaussian_labels(means, points, ids, radius=0.0625).tolist() == [3, -1, -1, -1, 9]
    assert gaussian_labels(means, points, ids, radius=0.06).tolist() == [3, -1, -1, -1, -1]
    assert gaussian_labels(means, points, ids, radius=1.0).tolist() == [3, 7, -1, 3, 9]
    assert gaussian_labels(means, np.zeros((0, 3)), np.zeros(0, np.int64), 1.0).tolist() == [-1] * 5


def test_scene_features_label_gaussians_from_the_labelled_points(rooms, feats):
    from liftgs.io.scene_dir import read_scene

    scene = read_scene(rooms / "data" / "room0", load_frames=False)
    # the stand-in reconstruction puts one Gaussian on every point: labels == the points' ids
    assert feats.means.shape[0] == scene.points.shape[0]
    assert np.array_equal(feats.gaussian_ids.numpy(), scene.instance_ids.astype(np.int64))
    assert feats.object_ids.tolist() == sorted(scene.objects)


def test_cache_config_is_validated():
    for bad in (dict(image_size=0), dict(max_per_view=True), dict(label_radius=0.0), dict(label_radius=float("nan"))):
        with pytest.raises(ValueError, match="SceneCacheConfig"):
            SceneCacheConfig(**bad)


# -------------------------------------------------------------------------------- cache
def test_cache_writes_and_reloads_identical_tensors(rooms, stage2, tmp_path, counted):
    from safetensors import safe_open

    cache = SceneFeatureCache(stage2, rooms / "recon", tmp_path / "cache", SMALL)
    first = cache.get(rooms / "data" / "room0", "room0")
    assert len(counted) == 1 and (tmp_path / "cache" / "room0.safetensors").is_file()
    with safe_open(str(tmp_path / "cache" / "room0.safetensors"), "pt") as f:
        assert "rendered_pixels" in f.keys() and f.metadata()["version"] == str(gsc.VERSION)
    assert cache.get(rooms / "data" / "room0", "room0") is first  # in memory after the first call
    assert not list((tmp_path / "cache").glob("*.tmp"))
    again = SceneFeatureCache(stage2, rooms / "recon", tmp_path / "cache", SMALL).get(rooms / "data" / "room0",
                                                                                    "room0")
    assert len(counted) == 1  # read from the file, not recomputed
    _assert_same(first, again)
    assert again.pooled.valid.dtype == torch.bool
    S = SMALL.image_size
    F = first.num_views
    assert first.images.shape == (F, 3, S, S) and first.images.dtype == torch.uint8
    assert first.view_index.shape[0] == F and first.view_index.shape[1] <= SMALL.max_per_view
    assert (first.width, first.height) == (48, 48)
    O = first.object_ids.numel()
    assert first.rendered_pixels.shape == (F, O) and first.rendered_pixels.dtype == torch.int64
    assert first.rendered_pixels.sum() > 0 and torch.equal(again.rendered_pixels, first.rendered_pixels)


def test_an_older_cache_version_is_recomputed(rooms, stage2, tmp_path, counted, monkeypatch):
    root = tmp_path / "cache"
    version = gsc.VERSION
    monkeypatch.setattr(gsc, "VERSION", version - 1)
    SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room0", "room0")
    monkeypatch.setattr(gsc, "VERSION", version)
    SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room0", "room0")
    assert len(counted) == 2


def test_other_settings_or_another_model_recompute(rooms, stage2, tmp_path, counted):
    root = tmp_path / "cache"
    base = SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room0", "room0")
    assert len(counted) == 1
    other = SceneCacheConfig(image_size=32, max_per_view=16)
    smaller = SceneFeatureCache(stage2, rooms / "recon", root, other).get(rooms / "data" / "room0", "room0")
    assert len(counted) == 2 and smaller.view_index.shape[1] <= 16 < base.view_index.shape[1]
    torch.testing.assert_close(smaller.latents, base.latents)
    # the file now holds the max_per_view=16 features: the original settings recompute again
    again = SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room0", "room0")
    assert len(counted) == 3
    _assert_same(base, again)
    model_b = _stage_two(1)
    assert model_fingerprint(model_b) != model_fingerprint(stage2)
    theirs = SceneFeatureCache(model_b, rooms / "recon", root, SMALL).get(rooms / "data" / "room0", "room0")
    assert len(counted) == 4 and not torch.equal(theirs.latents, base.latents)
    assert torch.equal(theirs.gaussian_ids, base.gaussian_ids)


def test_damaged_cache_file_is_recomputed(rooms, stage2, tmp_path, counted):
    root = tmp_path / "cache"
    base = SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room1", "room1")
    file = root / "room1.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])  # truncated
    again = SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room1", "room1")
    assert len(counted) == 2
    _assert_same(base, again)
    file.write_bytes(b"not a safetensors file")
    SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room1", "room1")
    assert len(counted) == 3
    reread = SceneFeatureCache(stage2, rooms / "recon", root, SMALL).get(rooms / "data" / "room1", "room1")
    assert len(counted) == 3  # the rewritten file is whole again
    _assert_same(base, reread)


def test_model_fingerprint_follows_the_weights(stage2):
    copy = _stage_two(0)
    assert model_fingerprint(copy) == model_fingerprint(stage2) and len(model_fingerprint(copy)) == 64
    with torch.no_grad():
        next(copy.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(copy) != model_fingerprint(stage2)


# ----------------------------------------------------------------------------- per view
def test_visible_sums_the_targets_pixels_against_the_threshold(feats):
    f = dataclasses.replace(feats, object_ids=torch.tensor([3, 5, 7]),
                            visible_pixels=torch.tensor([[0, 16, 3], [15, 0, 1], [20, 20, 20]]))
    assert f.visible([5]).tolist() == [True, False, True]
    assert f.visible([3]).tolist() == [False, False, True]
    assert f.visible([3], min_pixels=15).tolist() == [False, True, True]
    assert f.visible([3, 7]).tolist() == [False, True, True]  # 3, 16, 40 pixels summed
    assert f.visible([3, 99]).tolist() == [False, False, True]  # unknown ids add nothing
    assert f.visible([99]).tolist() == [False] * 3 and f.visible([99]).dtype == bool
    assert f.visible([5, 7], min_pixels=1).tolist() == [True, True, True]


def test_visible_reads_the_rendered_counts_with_source_rendered(feats):
    f = dataclasses.replace(feats, object_ids=torch.tensor([3, 5]),
                            visible_pixels=torch.tensor([[20, 0], [0, 20], [0, 0]]),
                            rendered_pixels=torch.tensor([[0, 20], [20, 20], [0, 15]]))
    assert f.visible([3]).tolist() == f.visible([3], source="instance").tolist() == [True, False, False]
    assert f.visible([3], source="rendered").tolist() == [False, True, False]
    assert f.visible([5], 16, "rendered").tolist() == [True, True, False]
    assert f.visible([5], 15, "rendered").tolist() == [True, True, True]
    assert f.visible([99], source="rendered").tolist() == [False] * 3
    with pytest.raises(ValueError) as err:
        f.visible([3], source="depth")
    assert "\n" not in str(err.value) and "source" in str(err.value) and "'rendered'" in str(err.value)


def test_visible_matches_the_instance_maps(rooms, feats):
    from liftgs.io.scene_dir import read_scene

    scene = read_scene(rooms / "data" / "room0")
    for o in scene.objects:
        counts = np.array([(f.instance_ids == o).sum() for f in scene.frames])
        assert feats.visible([o], 100).tolist() == (counts >= 100).tolist()
        assert feats.visible_pixels[:, feats.object_ids.tolist().index(o)].tolist() == counts.tolist()


def _camera(width=32, height=32, focal=32.0):
    """Camera at the origin looking down +z (OpenCV axes)."""
    from liftgs.types import Camera

    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return Camera(K=K, viewmat=np.eye(4), width=width, height=height)


def _splats(rows):
    """(means, quats, scales, opacities, ids) of (centre, scale xyz, opacity, object id) rows."""
    means = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    scales = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    opacities = torch.tensor([r[2] for r in rows], dtype=torch.float32)
    quats = torch.tensor([[1.0, 0, 0, 0]] * len(rows))
    return means, quats, scales, opacities, torch.tensor([r[3] for r in rows])


def test_rendered_pixels_hide_occluded_and_off_camera_objects():
    from liftgs.render import render

    wall = ([0.0, 0, 2], [1.0, 1.0, 0.01], 0.99, 4)  # wide, nearly opaque, covers the image centre
    hidden = ([0.0, 0, 4], [0.15, 0.15, 0.15], 0.99, 9)  # straight behind the wall
    behind = ([0.0, 0, -2], [1.0, 1.0, 1.0], 0.99, 2)  # behind the camera
    side = ([0.6, 0, 1.5], [0.1, 0.1, 0.1], 0.99, 7)  # in front of the wall, right of the centre
    veil = ([-0.4, 0, 1], [0.25, 0.25, 0.01], 0.99, -1)  # unlabelled, in front of the wall's left half
    objects = torch.tensor([2, 4, 7, 9, 11])  # 11: no Gaussian
    cams = [_camera(), _camera(48, 40)]
    counts = rendered_object_pixels(*_splats([wall, hidden, behind, side, veil]), objects, cams)
    assert counts.shape == (2, 5) and counts.dtype == torch.int64
    assert counts[:, 0].tolist() == [0, 0] and counts[:, 3].tolist() == [0, 0] and counts[:, 4].tolist() == [0, 0]
    assert (counts[:, 1] > 100).all() and (counts[:, 2] > 0).all()
    assert (counts.sum(1) <= torch.tensor([32 * 32, 48 * 40])).all()
    # the unlabelled veil counts for no object but hides part of the wall
    unveiled = rendered_object_pixels(*_splats([wall, hidden, behind, side]), objects, cams)
    assert (unveiled[:, 1] > counts[:, 1]).all() and torch.equal(unveiled[:, [0, 3, 4]], counts[:, [0, 3, 4]])
    # without the wall the hidden object shows; the behind-camera one never does
    alone = rendered_object_pixels(*_splats([hidden, behind]), objects, cams)
    assert (alone[:, 3] > 0).all() and alone[:, 0].tolist() == [0, 0]
    # one object alone: its share is the rendered alpha, counted where it exceeds 0.5
    means, quats, scales, opacities, ids = _splats([wall])
    _, alpha, _ = render(means, quats, scales, opacities, torch.zeros(1, 1), torch.eye(4), torch.tensor(
        cams[0].K, dtype=torch.float32), 32, 32)
    single = rendered_object_pixels(means, quats, scales, opacities, ids, objects, cams[:1])
    assert single[0].tolist() == [0, int((alpha > 0.5).sum()), 0, 0, 0]
    # no labelled Gaussian, or no objects: zeros of the right shape
    assert rendered_object_pixels(*_splats([veil]), objects, cams).tolist() == [[0] * 5] * 2
    assert rendered_object_pixels(*_splats([wall]), torch.zeros(0, dtype=torch.long), cams).shape == (2, 0)


def test_seen_gaussians_are_the_rendered_ones():
    wall = ([0.0, 0, 2], [1.0, 1.0, 0.01], 0.99, 4)
    hidden = ([0.0, 0, 4], [0.15, 0.15, 0.15], 0.99, 9)  # behind the wall: in the frame, not seen
    behind = ([0.0, 0, -2], [1.0, 1.0, 1.0], 0.99, 2)  # behind the camera
    side = ([0.6, 0, 1.5], [0.1, 0.1, 0.1], 0.99, 7)
    faint = ([-0.6, 0, 1.5], [0.01, 0.01, 0.01], 0.05, -1)  # a speck: less than half a pixel of weight
    objects = torch.tensor([2, 4, 7, 9])
    rendered, seen = render_view_stats(*_splats([wall, hidden, behind, side, faint]), objects, [_camera(), _camera(48, 40)])
    assert seen.dtype == torch.bool and seen.shape == (2, 5)
    assert seen.tolist() == [[True, False, False, True, False]] * 2
    assert torch.equal(rendered, rendered_object_pixels(*_splats([wall, hidden, behind, side, faint]), objects,
                                                        [_camera(), _camera(48, 40)]))
    # without the wall the hidden one is seen; an unlabelled scene still gets its seen sets
    _, alone = render_view_stats(*_splats([hidden, behind]), objects, [_camera()])
    assert alone.tolist() == [[True, False]]
    counts, unlabelled = render_view_stats(*_splats([([0.0, 0, 2], [1.0, 1.0, 0.01], 0.99, -1)]), objects,
                                           [_camera()])
    assert counts.tolist() == [[0, 0, 0, 0]] and unlabelled.tolist() == [[True]]


def test_view_sets_and_prior_follow_the_seen_gaussians(feats):
    assert feats.seen.shape == (feats.num_views, feats.means.shape[0]) and feats.seen.dtype == torch.bool
    for v, idx in enumerate(feats.view_sets()):
        assert feats.seen[v, idx].all()
        assert idx.numel() == min(int(feats.seen[v].sum()), SMALL.max_per_view)
    prior = feats.view_prior([0, 2])
    assert prior.dtype == torch.float32 and prior.shape == (feats.means.shape[0],)
    assert torch.equal(prior, (feats.seen[0].float() + feats.seen[2].float()) / 2)
    assert torch.equal(feats.view_prior([1]), feats.seen[1].float())
    assert feats.view_prior([]).abs().sum() == 0


def test_rendered_visibility_agrees_with_the_instance_maps(feats):
    F, O = feats.rendered_pixels.shape
    assert (F, O) == tuple(feats.visible_pixels.shape)
    agree = [feats.visible([int(o)], m, "rendered")[v] == feats.visible([int(o)], m, "instance")[v]
             for m in (16, 100) for o in feats.object_ids for v in range(F)]
    assert np.mean(agree) >= 0.75, np.mean(agree)
    # per pixel, the rendered counts follow the instance maps' (one Gaussian per labelled point)
    a, b = feats.visible_pixels.double().ravel(), feats.rendered_pixels.double().ravel()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8


def test_view_sets_drop_the_padding(feats):
    sets = feats.view_sets()
    assert len(sets) == feats.num_views
    for v, idx in enumerate(sets):
        row = feats.view_index[v]
        assert torch.equal(idx, row[row >= 0]) and (idx < feats.means.shape[0]).all()
        assert idx.numel() == len(set(idx.tolist())) > 0
    assert [s.tolist() for s in feats.view_sets([2, 0])] == [sets[2].tolist(), sets[0].tolist()]
    padded = feats.view_index.clone()
    padded[1, 3:] = -1
    assert dataclasses.replace(feats, view_index=padded).view_sets([1])[0].tolist() == sets[1][:3].tolist()


def test_view_context_layout(rooms, feats):
    from liftgs.io.scene_dir import read_scene

    scene = read_scene(rooms / "data" / "room0")
    C = feats.latents.shape[1]
    ctx = feats.view_context()
    assert ctx.shape == (feats.num_views, C + 9) and ctx.dtype == torch.float32
    centre = feats.centre()
    assert centre.shape == (3,)
    for v, (idx, fr) in enumerate(zip(feats.view_sets(), scene.frames)):
        eye = np.linalg.inv(fr.camera.viewmat)[:3, 3]
        torch.testing.assert_close(ctx[v, C:C + 3], torch.from_numpy(eye).float() - centre, rtol=1e-5, atol=1e-5)
        forward = ctx[v, C + 3:C + 6]
        assert float(forward.norm()) == pytest.approx(1.0, abs=1e-5)
        to_target = torch.tensor([1.0, 1.0, 0.2]) - torch.from_numpy(eye).float()  # the rooms' look-at point
        assert float(forward @ to_target / to_target.norm()) == pytest.approx(1.0, abs=1e-4)
        torch.testing.assert_close(ctx[v, :C], feats.latents[idx].mean(0))
        torch.testing.assert_close(ctx[v, C + 6:], feats.means[idx].mean(0) - centre)
    assert torch.equal(feats.view_context([2, 0]), ctx[[2, 0]])
    assert feats.view_context([]).shape == (0, C + 9)
    empty = feats.view_index.clone()
    empty[1] = -1  # a view that sees no Gaussian: zero latent and zero position
    row = dataclasses.replace(feats, view_index=empty).view_context([1])[0]
    assert torch.equal(row[:C], torch.zeros(C)) and torch.equal(row[C + 6:], torch.zeros(3))
    torch.testing.assert_close(row[C:C + 6], ctx[1, C:C + 6])


# ------------------------------------------------------------------------------- errors
def _copy_scene(rooms, dest, *, instance_maps: bool = True, point_ids: bool = True):
    from liftgs.io.scene_dir import read_scene, write_scene
    from liftgs.types import Frame, Scene

    s = read_scene(rooms / "data" / "room0")
    frames = s.frames if instance_maps else [Frame(f.camera, f.rgb, f.depth, None, f.name) for f in s.frames]
    scene = Scene(s.scene_id, s.points, s.colors, frames, s.instance_ids if point_ids else None, s.objects,
                  s.expressions)
    write_scene(scene, dest)
    return dest / s.scene_id


@pytest.mark.parametrize("what", ["instance_maps", "point_ids"])
def test_unlabelled_scenes_are_one_line_errors_naming_the_file(rooms, stage2, tmp_path, what):
    path = _copy_scene(rooms, tmp_path / "data", **{what: False})
    cache = SceneFeatureCache(stage2, rooms / "recon", tmp_path / "cache", SMALL)
    with pytest.raises(DataError) as err:
        cache.get(path, "room0")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path / "scene.json"))
    assert ("instance map" in msg) if what == "instance_maps" else ("instance ids" in msg)
    assert not (tmp_path / "cache" / "room0.safetensors").exists()


def test_unlabelled_scans_have_zero_rendered_pixels(rooms, stage2, tmp_path):
    path = _copy_scene(rooms, tmp_path / "data", instance_maps=False, point_ids=False)
    feats = SceneFeatureCache(stage2, rooms / "recon", None, SMALL, labels=False).get(path, "room0")
    F, O = feats.num_views, feats.object_ids.numel()
    assert (feats.gaussian_ids == -1).all() and O > 0
    assert feats.rendered_pixels.shape == (F, O) and not feats.rendered_pixels.any()
    assert not feats.visible_pixels.any() and not feats.visible(feats.object_ids.tolist(), 1, "rendered").any()


def test_missing_reconstructions_are_one_line_errors(rooms, stage2, tmp_path):
    with pytest.raises(DataError, match="reconstruction root is not a directory"):
        SceneFeatureCache(stage2, tmp_path / "nothing", None)
    (tmp_path / "recon").mkdir()
    cache = SceneFeatureCache(stage2, tmp_path / "recon", None, SMALL)
    with pytest.raises(DataError) as err:
        cache.load_all([(rooms / "data" / "room0", "room0"), (rooms / "data" / "room1", "room1")])
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "recon" / "room0" / "gaussians.ply") in msg
    assert "2 of 2 scenes have no reconstruction" in msg
