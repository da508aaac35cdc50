"""GenSplat stage III (liftgs.recipes.gensplat_language) on fabricated rooms with stand-in
reconstructions and a fresh tiny stage-II GenSplat: the training views, the sample stream, a short
run whose saved bundle reproduces the trained model's loss, exact resume, the bundle's round trip
and one-line input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from liftgs.recipes.gensplat_language import (REFER_REPLY, GenSplatLanguageConfig, LanguageDataset,
                                              load_language_model, refer_prompt, run_gensplat_language,
                                              training_views)
from liftgs.testing.rooms import EMBEDDING_DIM

QUESTIONS = [
    {"question_id": "q0", "scene_id": "room0", "question": "What colour is the chair?", "answers": ["red"],
     "object_ids": [0], "split": "train"},
    {"question_id": "q1", "scene_id": "room1", "question": "How many boxes are there?", "answers": ["three"],
     "object_ids": [], "split": "train"},
    {"question_id": "q2", "scene_id": "room3", "question": "Is it blue?", "answers": ["yes"],
     "object_ids": [1], "split": "train"},  # a val scene: not trained on
    {"question_id": "q3", "scene_id": "room2", "question": "Where is it?", "answers": ["left"],
     "object_ids": [2], "split": "val"},  # a val question: not trained on
]


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Four fabricated rooms (3 train, 1 val), their recon root, a tiny stage-II model folder, a
    question file and a scene-feature cache shared by the runs."""
    from liftgs.models import build_model
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("langrooms"))
    write_point_recon(root / "data", root / "recon")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        build_model("gensplat", "tiny", EMBEDDING_DIM).save_pretrained(root / "gs2" / "model")
    (root / "qa.json").write_text(json.dumps(QUESTIONS))
    return root


def config(rooms: Path, out: Path, **kw) -> GenSplatLanguageConfig:
    base = dict(data=rooms / "data", recon=rooms / "recon", gensplat=rooms / "gs2", cache=rooms / "cache",
                text_encoder=f"hash-{EMBEDDING_DIM}",
                qa=rooms / "qa.json", qa_fraction=0.3, out=out, steps=4, batch_size=2, num_views=2, ckpt_every=2,
                log_every=1, tensorboard=False, progress=False, image_size=32, max_per_view=64, min_pixels=16)
    base.update(kw)
    return GenSplatLanguageConfig(**base)


@pytest.fixture(scope="module")
def trained(rooms, tmp_path_factory):
    """A 4-step run (the reference of the resume test too)."""
    out = tmp_path_factory.mktemp("lang") / "full"
    logged = []
    result = run_gensplat_language(config(rooms, out), on_step_end=lambda step, s: logged.append(s))
    return result, out, logged


def _features(rooms):
    from liftgs.recipes.common import scene_paths
    from liftgs.recipes.gensplat_language import load_stage_two
    from liftgs.recipes.gensplat_scenes import SceneFeatureCache

    cfg = config(rooms, rooms / "unused")
    dirs = scene_paths(rooms / "data", "train")
    cache = SceneFeatureCache(load_stage_two(rooms / "gs2"), rooms / "recon", rooms / "cache", cfg.cache_config())
    return dirs, cache.load_all([(p, p.name) for p in dirs])


def _qa_items(rooms):
    from liftgs.recipes.gensplat_language import read_training_questions

    return read_training_questions(rooms / "qa.json", {"room0", "room1", "room2"}, "train")


# ------------------------------------------------------------------------------- views
def test_training_views_take_all_frames_when_k_covers_them():
    rng = np.random.default_rng(0)
    vis = np.array([True, False, True])
    for k in (3, 4, 10):
        got = training_views(rng, vis, k)
        assert got.dtype == np.int64 and got.tolist() == [0, 1, 2]


def test_training_views_are_distinct_sorted_and_mix_every_share_of_visible_frames():
    vis = np.zeros(10, dtype=bool)
    vis[[1, 4, 8]] = True
    k = 4
    shown_counts = []
    for seed in range(400):
        got = training_views(np.random.default_rng(seed), vis, k)
        assert len(got) == k and len(set(got.tolist())) == k and np.all(np.diff(got) > 0)
        assert got.min() >= 0 and got.max() < 10
        shown_counts.append(int(vis[got].sum()))
    counts = np.bincount(shown_counts, minlength=5)
    # j ~ U{0..min(k, |visible|)} = U{0..3}: each share appears about 100 times, never 4
    assert counts[4] == 0 and all(60 < c < 140 for c in counts[:4]), counts
    # fewer visible frames than k: j <= |visible|
    one = np.zeros(10, dtype=bool)
    one[5] = True
    draws = [int(one[training_views(np.random.default_rng(s), one, k)].sum()) for s in range(100)]
    assert set(draws) == {0, 1}
    none = training_views(np.random.default_rng(0), np.zeros(10, dtype=bool), k)
    assert len(none) == k and len(set(none.tolist())) == k


def test_training_views_fill_from_any_frame_when_hidden_ones_run_out():
    vis = np.array([True, True, True, True, False])
    for seed in range(50):
        got = training_views(np.random.default_rng(seed), vis, 3)
        assert len(set(got.tolist())) == 3 and np.all(np.diff(got) > 0)
        assert vis[got].sum() >= 2  # only one frame hides the target


def test_training_views_are_deterministic_for_a_fixed_generator():
    vis = np.random.default_rng(1).random(12) < 0.4
    a = [training_views(np.random.default_rng(7), vis, 5).tolist() for _ in range(3)]
    assert a[0] == a[1] == a[2]
    seq1 = np.random.default_rng(3)
    seq2 = np.random.default_rng(3)
    assert [training_views(seq1, vis, 5).tolist() for _ in range(5)] == \
           [training_views(seq2, vis, 5).tolist() for _ in range(5)]


# ------------------------------------------------------------------------------ samples
def test_samples_are_a_function_of_their_position(rooms):
    from liftgs.io.scene_dir import read_scene_json

    dirs, feats = _features(rooms)
    ds = LanguageDataset(dirs, feats, seed=5, num_views=2, min_pixels=16, qa_items=_qa_items(rooms),
                         qa_fraction=0.5)
    assert len(ds.refer) == 9 and len(ds.qa) == 2  # 3 expressions per room; q2, q3 not training ones
    assert ds.answers == [REFER_REPLY, "red", "three"]
    texts = {refer_prompt(e["text"]) for p in dirs for e in read_scene_json(p)["expressions"]}
    kinds = set()
    for pos in range(30):
        a, b = ds.sample(pos), ds.sample(pos)
        assert a.feats is b.feats and a.views.tolist() == b.views.tolist()
        assert (a.text, a.answer, a.targets, a.kind) == (b.text, b.answer, b.targets, b.kind)
        assert len(a.views) == 2 and a.views[0] < a.views[1]
        kinds.add(a.kind)
        if a.kind == "refer":
            assert a.text in texts and a.answer == REFER_REPLY and len(a.targets) == 1
        else:
            assert a.answer in ("red", "three") and a.text in ("What colour is the chair?", "How many boxes are there?")
    assert kinds == {"refer", "qa"}
    again = LanguageDataset(dirs, feats, seed=5, num_views=2, min_pixels=16, qa_items=_qa_items(rooms),
                            qa_fraction=0.5)
    assert [again.sample(p).views.tolist() for p in range(10)] == [ds.sample(p).views.tolist() for p in range(10)]
    other = LanguageDataset(dirs, feats, seed=6, num_views=2, min_pixels=16)
    assert [other.sample(p).text for p in range(20)] != [ds.sample(p).text for p in range(20)]
    assert all(other.sample(p).kind == "refer" for p in range(20))  # no questions: expressions only


def test_a_scene_set_without_expressions_is_refused(rooms, tmp_path):
    from liftgs.io.errors import DataError
    from liftgs.io.scene_dir import read_scene, write_scene

    s = read_scene(rooms / "data" / "room0")
    s.expressions = []
    write_scene(s, tmp_path)
    _, feats = _features(rooms)
    with pytest.raises(DataError, match="no referring expressions"):
        LanguageDataset([tmp_path / "room0"], feats[:1], seed=0, num_views=2, min_pixels=16)


# ---------------------------------------------------------------------------------- runs
def test_run_saves_a_bundle_that_reproduces_the_trained_loss(rooms, trained):
    from liftgs.recipes.gensplat_language import GenSplatLanguage

    result, out, logged = trained
    assert result.step == 4 and len(logged) == 4
    assert all(np.isfinite(s["loss"]) and 0.0 <= s["answer_acc"] <= 1.0 for s in logged)
    assert any("mask" in s and 0.0 <= s["train_iou"] <= 1.0 for s in logged)
    doc = json.loads((out / "config.json").read_text())
    assert doc["recipe"] == "gensplat-language" and doc["num_scenes"] == 3
    assert doc["num_expressions"] == 9 and doc["num_questions"] == 2 and doc["answers"] == 3
    assert doc["stage2_model"] == str(rooms / "gs2" / "model")
    assert {p.name for p in (out / "model").iterdir()} == {"language.json", "reasoner", "referring.safetensors",
                                                           "gensplat"}
    loaded = load_language_model(out)
    assert isinstance(loaded, GenSplatLanguage) and not loaded.training
    assert loaded.settings == result.model.settings and loaded.settings.num_views == 2
    assert len(loaded.settings.stage2_fingerprint) == 64
    assert list(loaded.reasoner.answers) == [REFER_REPLY, "red", "three"]
    for k, v in result.model.state_dict().items():
        assert torch.equal(v.cpu(), loaded.state_dict()[k]), k
    dirs, feats = _features(rooms)
    ds = LanguageDataset(dirs, feats, seed=0, num_views=2, min_pixels=16, qa_items=_qa_items(rooms),
                         qa_fraction=0.5)
    samples = [ds.sample(p) for p in range(6)]
    assert {s.kind for s in samples} == {"refer", "qa"}
    result.model.eval()
    with torch.no_grad():
        a_loss, a = result.model(samples)
        b_loss, b = loaded(samples)
    assert torch.isfinite(a_loss) and torch.equal(a_loss, b_loss) and a == b
    # the stage-II model rides along with the bundle, unchanged
    from liftgs.recipes.gensplat_scenes import model_fingerprint

    assert model_fingerprint(loaded.stage2) == loaded.settings.stage2_fingerprint


def test_exact_resume(rooms, trained, tmp_path):
    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 3:
            raise Killed

    _, full, _ = trained
    with pytest.raises(Killed):
        run_gensplat_language(config(rooms, tmp_path / "cut"), on_step_end=kill)
    result = run_gensplat_language(config(rooms, tmp_path / "cut", resume=True))
    assert (result.start_step, result.step) == (2, 4)
    a, b = load_language_model(full).state_dict(), load_language_model(tmp_path / "cut").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_bundle_round_trip_and_damaged_files(trained, tmp_path):
    result, _, _ = trained
    model = result.model
    path = model.save_pretrained(tmp_path / "bundle")
    assert not list(tmp_path.glob(".*"))  # staged folder moved into place
    loaded = load_language_model(path)
    assert loaded.mask_weight == model.mask_weight and loaded.referring.config == model.referring.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k

    settings = path / "language.json"
    good = settings.read_text()
    for text, match in (("{not json", "not a valid stage-III settings file"),
                        (json.dumps({"format": "other"}), "not a valid stage-III settings file"),
                        (good.replace('"num_views": 2', '"num_views": "many"'), "num_views")):
        settings.write_text(text)
        with pytest.raises(ValueError, match=match) as err:
            load_language_model(path)
        assert str(settings) in str(err.value) and "\n" not in str(err.value)
    settings.write_text(good)
    shutil.copy(path / "referring.safetensors", tmp_path / "weights")
    (path / "referring.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="referring.safetensors: missing"):
        load_language_model(path)
    doc = json.loads(good)
    doc["referring"]["num_layers"] = doc["referring"]["num_layers"] + 1
    settings.write_text(json.dumps(doc))
    shutil.copy(tmp_path / "weights", path / "referring.safetensors")
    with pytest.raises(ValueError, match="weights do not match") as err:
        load_language_model(path)
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="language.json: missing"):
        load_language_model(tmp_path / "nothing")


# -------------------------------------------------------------------------------- errors
def test_inputs_are_checked_with_one_line_errors(rooms, tmp_path, cli_error):
    base = ["gensplat-language", "--data", str(rooms / "data"), "--recon", str(rooms / "recon"), "--steps", "1",
            "--no-progress", "--no-tensorboard", "--text-encoder", f"hash-{EMBEDDING_DIM}"]
    err = cli_error([*base, "--out", str(tmp_path / "a")])
    assert "--gensplat" in err
    err = cli_error([*base, "--gensplat", "liftgs-tiny-finetuned", "--out", str(tmp_path / "b")])
    assert "--gensplat needs a GenSplat model" in err and "got a LiftGS" in err
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([q for q in QUESTIONS if q["question_id"] in ("q2", "q3")]))
    err = cli_error([*base, "--gensplat", str(rooms / "gs2"), "--qa", str(qa),
                                   "--out", str(tmp_path / "c")])
    assert str(qa) in err and "no training-split question" in err and "room0" in err
    err = cli_error([*base, "--gensplat", str(rooms / "gs2"), "--qa", str(tmp_path / "none.json"),
                                   "--out", str(tmp_path / "d")])
    assert str(tmp_path / "none.json") in err and "question file not found" in err
    err = cli_error([*base, "--gensplat", str(rooms / "gs2"), "--text-encoder", "hash-8",
                                   "--out", str(tmp_path / "e")])
    assert "gives 8-d vectors" in err and f"semantic head is {EMBEDDING_DIM}-d" in err
    for out in "abcde":
        assert not (tmp_path / out / "model").exists()


def test_bf16_run_keeps_float32_weights(rooms, tmp_path):
    """--precision bf16: the first-step loss within 10 % of float32's, float32 weights out."""
    from helpers.precision import run_both_precisions

    run_both_precisions(lambda out, precision: run_gensplat_language(config(rooms, out, steps=2, precision=precision)),
                        tmp_path)
