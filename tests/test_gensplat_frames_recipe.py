"""GAFS's relevance scorer: the frame-scorer folder (round trip, one-line errors) and the
``gensplat-frames`` recipe on fabricated rooms with stand-in reconstructions and a fresh tiny
stage-II GenSplat: samples and labels, loss falling, exact resume, input errors, select_frames."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from liftgs.models.gensplat.gafs import FrameScorer, FrameScorerConfig
from liftgs.testing.rooms import EMBEDDING_DIM, RoomTextEncoder

SMALL = dict(dim=16, embed_dim=16, num_heads=2, ffn_dim=32, cnn_channels=(8, 16), image_size=32)


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Four fabricated rooms (3 train, 1 val), their recon root, a tiny stage-II model folder and
    a scene-feature cache shared by the runs."""
    from liftgs.models import build_model
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("gafsrooms"))
    write_point_recon(root / "data", root / "recon")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        build_model("gensplat", "tiny", EMBEDDING_DIM).save_pretrained(root / "gs2" / "model")
    return root


def config(rooms, out, **kw):
    from liftgs.recipes.gensplat_frames import GenSplatFramesConfig

    base = dict(data=rooms / "data", recon=rooms / "recon", gensplat=rooms / "gs2", cache=rooms / "cache",
                out=out, steps=4, batch_size=3, ckpt_every=2, log_every=1, tensorboard=False, progress=False,
                text_encoder="hash-32", min_pixels=4, **SMALL)
    base.update(kw)
    return GenSplatFramesConfig(**base)


# ------------------------------------------------------------------------------- folders
@pytest.mark.parametrize("mode", ["geometry", "views"])
def test_save_load_round_trip_gives_equal_logits(tmp_path, mode):
    scorer = FrameScorer(FrameScorerConfig(text_dim=8, latent_dim=4, mode=mode, **SMALL), seed=3)
    with torch.no_grad():
        scorer.bias.fill_(0.25)
    path = scorer.save_pretrained(tmp_path / "scorer")
    assert json.loads((path / "frames.json").read_text())["format"] == "liftgs-frame-scorer"
    loaded = FrameScorer.from_pretrained(path)
    assert loaded.config == scorer.config
    g = torch.Generator().manual_seed(0)
    args = dict(latents=torch.randn(5, 7, 4, generator=g), positions=torch.randn(5, 7, 3, generator=g),
                gaussian_mask=torch.rand(5, 7, generator=g) > 0.3)
    text, images = torch.randn(8, generator=g), torch.rand(5, 3, 20, 20, generator=g)
    with torch.no_grad():
        assert torch.equal(scorer(text, images, **args).logits, loaded(text, images, **args).logits)


def test_bad_folders_are_one_line_errors_naming_the_file(tmp_path):
    scorer = FrameScorer(FrameScorerConfig(text_dim=8, latent_dim=4, **SMALL))
    with pytest.raises(ValueError, match="frames.json: missing"):
        FrameScorer.from_pretrained(tmp_path / "nothing")
    path = scorer.save_pretrained(tmp_path / "a")
    (path / "frames.json").write_text(json.dumps({"format": "other", "config": {}}))
    with pytest.raises(ValueError, match=r"frames\.json: not a valid frame scorer config") as err:
        FrameScorer.from_pretrained(path)
    assert "\n" not in str(err.value)
    path = scorer.save_pretrained(tmp_path / "b")
    (path / "frames.json").write_text(json.dumps({"format": "liftgs-frame-scorer", "config": {"dim": "x"}}))
    with pytest.raises(ValueError, match=r"frames\.json.*config\.dim"):
        FrameScorer.from_pretrained(path)
    path = scorer.save_pretrained(tmp_path / "c")
    doc = json.loads((path / "frames.json").read_text())
    doc["config"]["dim"] = 32
    (path / "frames.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"model\.safetensors: weights do not match"):
        FrameScorer.from_pretrained(path)
    path = scorer.save_pretrained(tmp_path / "d")
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        FrameScorer.from_pretrained(path)


# -------------------------------------------------------------------------------- recipe
def _relevant_texts(rooms, min_pixels):
    """Per visibility source, how many expressions of the training rooms have a relevant view."""
    from liftgs.recipes.gensplat_frames import load_stage_two, scene_texts
    from liftgs.recipes.gensplat_scenes import SceneFeatureCache

    cfg = config(rooms, rooms / "unused")
    cache = SceneFeatureCache(load_stage_two(rooms / "gs2")[0], rooms / "recon", rooms / "cache", cfg.cache_config())
    out = {}
    for source in ("instance", "rendered"):
        out[source] = sum(bool(cache.get(rooms / "data" / sid, sid).visible(targets, min_pixels, source).any())
                          for sid in ("room0", "room1", "room2") for _, targets in scene_texts(rooms / "data" / sid))
    return out


def test_loss_falls_and_the_model_folder_loads(rooms, tmp_path):
    from liftgs.recipes.gensplat_frames import run_gensplat_frames

    # at 100 pixels each room's objects are relevant in some views only (labels of both kinds)
    losses, scalars = [], []
    cfg = config(rooms, tmp_path / "run", steps=40, ckpt_every=40, min_pixels=100)
    result = run_gensplat_frames(cfg, text_encoder=RoomTextEncoder(),
                                 on_step_end=lambda step, s: (losses.append(s["loss"]), scalars.append(s)))
    assert result.step == 40
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)
    assert all(0.0 <= s["auc"] <= 1.0 and 0.0 <= s["top1"] <= 1.0 for s in scalars)
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["gensplat_model"] == str(rooms / "gs2" / "model") and len(doc["gensplat_fingerprint"]) == 64
    assert doc["scene_ids"] == ["room0", "room1", "room2"] and doc["gensplat-frames"]["visibility"] == "rendered"
    # the samples are the texts whose targets some view shows in the rendered Gaussians (>= 100 px)
    by_kind = _relevant_texts(rooms, 100)
    assert doc["num_samples"] == by_kind["rendered"] and doc["num_texts_without_visible_target"] == 9 - by_kind[
        "rendered"]
    assert by_kind["instance"] == 9 and by_kind["rendered"] >= 7  # the two kinds of label mostly agree
    scorer = FrameScorer.from_pretrained(tmp_path / "run" / "model")
    assert scorer.config.latent_dim == 32 and scorer.config.text_dim == EMBEDDING_DIM
    assert (rooms / "cache" / "room0.safetensors").is_file()
    # the geometry scorer carries the stage-II semantic head for its evidence term
    from liftgs.recipes.gensplat_frames import load_stage_two

    assert scorer.config.evidence
    torch.testing.assert_close(scorer.semantic_weight, load_stage_two(rooms / "gs2")[0].semantic_proj.weight.float())


def test_exact_resume(rooms, tmp_path):
    from safetensors.torch import load_file

    from liftgs.recipes.gensplat_frames import run_gensplat_frames

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 3:
            raise Killed

    enc = RoomTextEncoder()
    run_gensplat_frames(config(rooms, tmp_path / "full"), text_encoder=enc)
    with pytest.raises(Killed):
        run_gensplat_frames(config(rooms, tmp_path / "cut"), text_encoder=enc, on_step_end=kill)
    run_gensplat_frames(config(rooms, tmp_path / "cut", resume=True), text_encoder=enc)
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_qa_items_are_added_as_texts(rooms, tmp_path):
    from liftgs.recipes.gensplat_frames import run_gensplat_frames

    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([
        {"question_id": "q0", "scene_id": "room0", "question": "what colour is the box?", "answers": ["red"],
         "object_ids": [0], "split": "train"},
        {"question_id": "q1", "scene_id": "room1", "question": "how many boxes?", "answers": ["3"],
         "object_ids": [], "split": "train"},
        {"question_id": "q2", "scene_id": "room3", "question": "is it blue?", "answers": ["yes"],
         "object_ids": [1], "split": "val"},
        {"question_id": "q3", "scene_id": "room2", "question": "where is it?", "answers": ["left"],
         "object_ids": [2], "split": "val"},
    ]))
    run_gensplat_frames(config(rooms, tmp_path / "run", qa=qa, steps=1), text_encoder=RoomTextEncoder())
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["num_qa"] == 1 and doc["num_expressions"] == 9


def test_inputs_are_checked_with_one_line_errors(rooms, tmp_path):
    from liftgs.models import build_model
    from liftgs.recipes.gensplat_frames import run_gensplat_frames
    from liftgs.train.checkpoint import CheckpointError

    enc = RoomTextEncoder()

    def error(**kw) -> str:
        with pytest.raises((ValueError, CheckpointError)) as err:
            run_gensplat_frames(config(rooms, tmp_path / "x", **kw), text_encoder=enc)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "--gensplat" in error(gensplat=None)
    assert str(tmp_path / "nothing") in error(gensplat=tmp_path / "nothing")
    assert "32-d" in error(latent_dim=16) and "--latent-dim is 16" in error(latent_dim=16)
    data = tmp_path / "data"
    shutil.copytree(rooms / "data", data)
    for p in data.iterdir():
        if (p / "scene.json").is_file():
            doc = json.loads((p / "scene.json").read_text())
            doc["expressions"] = []
            (p / "scene.json").write_text(json.dumps(doc))
    assert "no expressions with targets" in error(data=data)
    assert "no split" in error(split="nosuch")
    with pytest.raises(ValueError, match="min_pixels"):
        config(rooms, tmp_path / "y", min_pixels=0)
    with pytest.raises(ValueError, match="divisible"):
        config(rooms, tmp_path / "y", num_heads=3)
    build_model("liftgs", "tiny", EMBEDDING_DIM).save_pretrained(tmp_path / "liftgs_model")
    assert "needs a GenSplat model" in error(gensplat=tmp_path / "liftgs_model")


# ------------------------------------------------------------------------------- selection
def test_select_frames_uniform_and_gafs(rooms, tmp_path):
    from liftgs.models.gensplat.frames import uniform_views
    from liftgs.recipes.gensplat_frames import load_stage_two, select_frames
    from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache

    model, _ = load_stage_two(rooms / "gs2")
    cache = SceneFeatureCache(model, rooms / "recon", rooms / "cache", SceneCacheConfig(image_size=32))
    feats = cache.get(rooms / "data" / "room0", "room0")
    text = RoomTextEncoder().encode(["the red chair"]).pooled[0]
    assert np.array_equal(select_frames(None, feats, text, 2, "uniform"), uniform_views(feats.num_views, 2))
    for mode in ("geometry", "views"):
        scorer = FrameScorer(FrameScorerConfig(text_dim=EMBEDDING_DIM, latent_dim=32, mode=mode, **SMALL))
        picked = select_frames(scorer, feats, text, 2, "gafs")
        assert picked.dtype == np.int64 and 1 <= len(picked) <= 2 and len(set(picked.tolist())) == len(picked)
        assert all(0 <= v < feats.num_views for v in picked)
        best = int(torch.argmax(scorer_logits(scorer, feats, text)))
        assert picked[0] == best
    with pytest.raises(ValueError, match="needs a FrameScorer"):
        select_frames(None, feats, text, 2, "gafs")
    with pytest.raises(ValueError, match="method"):
        select_frames(scorer, feats, text, 2, "blip")


def scorer_logits(scorer, feats, text):
    from liftgs.recipes.gensplat_frames import score_views, scorer_inputs

    with torch.no_grad():
        return score_views(scorer, scorer_inputs(feats, text, scorer.config.mode))


def test_bf16_run_keeps_float32_weights(rooms, tmp_path):
    """--precision bf16: the first-step loss within 10 % of float32's, float32 weights out."""
    from helpers.precision import run_both_precisions
    from liftgs.recipes.gensplat_frames import run_gensplat_frames

    run_both_precisions(lambda out, precision: run_gensplat_frames(config(rooms, out, steps=2, precision=precision)),
                        tmp_path)
