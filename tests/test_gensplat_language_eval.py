"""Evaluation of GenSplat's stage III (liftgs.eval.gensplat_language) on fabricated rooms with
stand-in reconstructions, a fresh tiny stage-II GenSplat and an untrained stage-III bundle: the
baseline's query choice, the oracle views, the paired differences, the per-expression scoring on
a hand-made scene, the full run's results.json / report.md and one-line config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liftgs.eval import gensplat_language as gl
from liftgs.eval.gensplat import mean_se
from liftgs.testing.rooms import EMBEDDING_DIM

TEXT_ENCODER = f"hash-{EMBEDDING_DIM}"  # the stage-II model's text width


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two fabricated rooms with reconstructions, a tiny stage-II model, an untrained stage-III
    bundle over it (2 views, view context on; a frame shows an object from 100 of its pixels, so
    in these 48 x 48 rooms each object is shown by some frames only) and room0's scene features."""
    from liftgs.models import build_model
    from liftgs.models.gensplat.compact import CompactConfig, CompactReasoner
    from liftgs.models.gensplat.referring import ReferringConfig, ReferringDecoder
    from liftgs.recipes.gensplat_language import GenSplatLanguage, LanguageSettings
    from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache, model_fingerprint
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("langeval"), count=2, val=0)
    write_point_recon(root / "data", root / "recon")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        stage2 = build_model("gensplat", "tiny", EMBEDDING_DIM).eval().requires_grad_(False)
        C = int(stage2.config.latent_dim)
        reasoner = CompactReasoner(["<SEG>", "red", "three"], CompactConfig(
            seg_dim=int(stage2.config.hidden_dim), image_size=32, cnn_channels=(8, 16), max_views=2,
            context_dim=C + 9), seed=0)
        referring = ReferringDecoder(ReferringConfig.from_gensplat(stage2.config, seg_dim=reasoner.seg_dim))
    settings = LanguageSettings(num_views=2, min_pixels=100, image_size=32, max_per_view=64,
                                stage2_fingerprint=model_fingerprint(stage2))
    model = GenSplatLanguage(reasoner, referring, stage2, settings).eval()
    model.save_pretrained(root / "gs3" / "model")
    cache = SceneFeatureCache(stage2, root / "recon", root / "cache",
                              SceneCacheConfig(image_size=32, max_per_view=64, label_radius=settings.label_radius))
    feats = cache.get(root / "data" / "room0", "room0")
    return SimpleNamespace(root=root, stage2=stage2, model=model, feats=feats)


@pytest.fixture(scope="module")
def encoder():
    from liftgs.text import load_text_encoder

    return load_text_encoder(TEXT_ENCODER)


# ------------------------------------------------------------------------------ baseline
def test_text_to_instance_masks_pick_the_query_with_the_highest_class_logit(setup, encoder):
    f, stage2 = setup.feats, setup.stage2
    texts = ["the red chair in the room", "the green table", "a lamp", "something else entirely"]
    emb = encoder.encode(texts).pooled.float()
    masks = gl.text_to_instance_masks(stage2, f, emb)
    assert len(masks) == len(texts)
    with torch.no_grad():
        out = stage2.decode(f.latents, f.means, f.pooled, emb)
    assert out.class_logits.shape[1] >= len(texts)
    for e, mask in enumerate(masks):
        q = int(out.class_logits[:, e].argmax())
        assert out.class_logits[q, e] == out.class_logits[:, e].max()
        assert mask.dtype == bool and mask.shape == (f.means.shape[0],)
        assert np.array_equal(mask, (out.mask_logits[q] > 0).numpy())
    # one text alone gets the same mask as in the batch (the scores of a text are its own column)
    assert np.array_equal(gl.text_to_instance_masks(stage2, f, emb[2:3])[0], masks[2])


# ------------------------------------------------------------------------------ selection
def test_oracle_views_draw_from_the_frames_that_show_the_target():
    vis = np.array([False, True, False, True, True, False, False])
    shown = set(np.flatnonzero(vis).tolist())
    seen = set()
    for seed in range(40):
        got = gl.oracle_views(vis, 2, np.random.default_rng(seed))
        assert got.dtype == np.int64 and len(got) == 2 and got[0] < got[1] and set(got.tolist()) <= shown
        seen |= set(got.tolist())
    assert seen == shown  # every showing frame gets drawn
    got = gl.oracle_views(vis, 5, np.random.default_rng(0))  # too few showing frames: the rest fill up
    assert len(got) == 5 and shown <= set(got.tolist()) and np.all(np.diff(got) > 0)
    assert gl.oracle_views(vis, 10, np.random.default_rng(0)).tolist() == list(range(7))
    none = gl.oracle_views(np.zeros(4, dtype=bool), 2, np.random.default_rng(0))
    assert len(none) == 2 and len(set(none.tolist())) == 2
    assert gl.oracle_views(vis, 2, np.random.default_rng(9)).tolist() == \
           gl.oracle_views(vis, 2, np.random.default_rng(9)).tolist()


# ------------------------------------------------------------------------------ scoring
def test_paired_differences_skip_undefined_entries():
    got = gl.paired([0.5, float("nan"), 0.2, 0.9, 0.3], [0.1, 0.3, float("nan"), 0.4, 0.3])
    ref = mean_se([0.4, 0.5, 0.0])
    assert got["n"] == 3 and got["mean"] == pytest.approx(0.3) and got["se"] == pytest.approx(ref["se"])
    assert gl.paired([float("nan")], [0.2])["n"] == 0


def test_add_scores_iou_on_points_and_marks_unique_targets():
    """Seven points, two per object: objects 0 and 1 are chairs, 2 a table; object 5 has no points."""
    points = np.array([[0, 0, 0], [0.1, 0.1, 0.1], [1, 0, 0], [1.1, 0.1, 0.1], [2, 0, 0], [2.1, 0.1, 0.1],
                       [3, 0, 0]], float)
    scene = SimpleNamespace(points=points, instance_ids=np.array([0, 0, 1, 1, 2, 2, -1]))
    classes = {0: "chair", 1: "chair", 2: "table"}
    scores = gl.MethodScores()
    expr = lambda *ids: SimpleNamespace(target_ids=list(ids))  # noqa: E731
    pred = lambda *idx: np.isin(np.arange(7), idx)  # noqa: E731
    gl._add(scores, scene, expr(2), pred(4, 5), classes, 1.0)  # the only table, exact
    gl._add(scores, scene, expr(0), pred(0, 2), classes, 0.5)  # a chair of two: 1 of 3 points
    gl._add(scores, scene, expr(0, 1), pred(0, 1, 2, 6), classes, float("nan"))  # both chairs: 3 of 5
    gl._add(scores, scene, expr(1), pred(), classes, 0.0)  # empty prediction
    gl._add(scores, scene, expr(5), pred(6), classes, 1.0)  # no target points: skipped
    assert scores.iou == pytest.approx([1.0, 1 / 3, 3 / 5, 0.0])
    assert scores.recall[:2] + scores.recall[3:] == [1.0, 0.5, 0.0] and math.isnan(scores.recall[2])
    assert [q.unique for q in scores.queries] == [True, False, True, False]
    s = scores.summary()
    assert s["miou"]["n"] == 4 and s["miou"]["mean"] == pytest.approx((1 + 1 / 3 + 3 / 5) / 4)
    assert s["recall"]["n"] == 3 and s["recall"]["mean"] == pytest.approx(0.5)
    seg = s["scanrefer"]
    assert seg["unique"]["n"] == 2 and seg["multiple"]["n"] == 2
    assert seg["unique"]["miou"] == pytest.approx((1 + 3 / 5) / 2)
    assert seg["overall"]["acc@0.5"] == pytest.approx(0.25)  # only the table's box matches well


# ---------------------------------------------------------------------------------- runs
def _config(setup, out: Path, **kw) -> gl.LanguageEvalConfig:
    base = dict(model=setup.root / "gs3", data=setup.root / "data", recon=setup.root / "recon", out=out,
                cache=setup.root / "cache", selections=("uniform", "oracle"), text_encoder=TEXT_ENCODER,
                progress=False)
    base.update(kw)
    return gl.LanguageEvalConfig(**base)


def test_run_language_eval_scores_every_expression(setup, tmp_path):
    from liftgs.io.scene_dir import read_scene
    from liftgs.recipes.gensplat_language import load_language_model
    from liftgs.recipes.gensplat_scenes import SceneFeatureCache

    out = tmp_path / "eval"
    res = gl.run_language_eval(_config(setup, out))
    assert res["scenes"] == ["room0", "room1"] and res["num_views"] == 2
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["referring"]) == {"uniform", "oracle", gl.BASELINE}
    assert set(doc["referring_paired"]) == {"oracle", gl.BASELINE}
    for name, m in doc["referring"].items():
        assert len(m["iou"]) == 6  # 3 expressions per room
        assert m["miou"]["n"] == 6 and 0.0 <= m["miou"]["mean"] <= 1.0 and math.isfinite(m["miou"]["mean"])
        assert all(0.0 <= x <= 1.0 for x in m["iou"])
    # per expression: "iou" and "view_recall" (NaN where undefined); summaries: "miou", "recall"
    assert all(math.isnan(r) for r in res["referring"][gl.BASELINE]["view_recall"])
    assert doc["referring"][gl.BASELINE]["recall"]["n"] == 0
    # view recall by hand: uniform takes frames 0 and 2 of 3; the oracle as many showing frames as fit
    model = load_language_model(setup.root / "gs3")
    cache = SceneFeatureCache(model.stage2, setup.root / "recon", setup.root / "cache",
                              _cache_config(model.settings))
    scenes = [read_scene(setup.root / "data" / sid, load_frames=False) for sid in ("room0", "room1")]
    feats = [cache.get(setup.root / "data" / s.scene_id, s.scene_id) for s in scenes]
    exprs = [[e for e in s.expressions if e.target_ids] for s in scenes]
    uniform, oracle = [], []
    for f, es in zip(feats, exprs):
        for e in es:
            vis = f.visible(e.target_ids, 100)
            assert vis.any()  # every object of these rooms is shown by some frame
            uniform.append(vis[[0, 2]].sum() / vis.sum())
            oracle.append(min(2, vis.sum()) / vis.sum())
    assert res["referring"]["uniform"]["view_recall"] == pytest.approx(uniform)
    assert res["referring"]["oracle"]["view_recall"] == pytest.approx(oracle)
    assert min(uniform) < 1.0 and min(oracle) == 1.0  # no target is shown by all 3 frames here
    for name in ("uniform", "oracle"):
        stat = doc["referring"][name]["recall"]
        assert stat["n"] == 6 and stat["mean"] == pytest.approx(np.mean(uniform if name == "uniform" else oracle))
    report = (out / "report.md").read_text()
    assert "uniform" in report and "oracle" in report and gl.BASELINE in report and "mIoU" in report

    # uniform's IoUs again, by hand: the mask carried to the points
    ious = []
    for scene, f, es in zip(scenes, feats, exprs):
        masks = gl.refer_masks(model, f, [e.text for e in es], [np.array([0, 2])] * len(es))
        for e, m in zip(es, masks):  # one Gaussian per point: the transfer is the identity
            target = np.isin(scene.instance_ids, e.target_ids)
            ious.append((m & target).sum() / max((m | target).sum(), 1))
    assert res["referring"]["uniform"]["iou"] == pytest.approx(ious)


def _cache_config(st):
    from liftgs.recipes.gensplat_scenes import SceneCacheConfig

    return SceneCacheConfig(image_size=st.image_size, max_per_view=st.max_per_view, label_radius=st.label_radius)


def test_configs_are_checked(setup, tmp_path):
    with pytest.raises(ValueError, match="--selections gafs-geometry needs --frames-geometry"):
        _config(setup, tmp_path, selections=("uniform", "gafs-geometry"))
    with pytest.raises(ValueError, match="--selections gafs-views needs --frames-views"):
        _config(setup, tmp_path, selections=("gafs-views",))
    with pytest.raises(ValueError, match="--selections must be among"):
        _config(setup, tmp_path, selections=("best",))
    with pytest.raises(ValueError, match="--tasks vqa needs --qa"):
        _config(setup, tmp_path, tasks=("vqa",))
    _config(setup, tmp_path, tasks=("vqa",), qa=tmp_path / "qa.json", selections=("gafs-geometry",))  # VQA only


def test_command_one_line_errors(setup, tmp_path, capsys):
    from liftgs.cli import main

    base = ["gensplat-eval-language", "--model", str(setup.root / "gs3"), "--data", str(setup.root / "data"),
            "--recon", str(setup.root / "recon"), "--out", str(tmp_path / "e"), "--text-encoder", TEXT_ENCODER,
            "--no-progress"]
    assert main([*base, "--selections", "uniform", "gafs-geometry"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--selections gafs-geometry needs --frames-geometry" in err
    assert main([*base[:2], str(tmp_path / "nothing"), *base[3:], "--selections", "uniform"]) == 2  # no model
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "nothing") in err
    assert not (tmp_path / "e").exists()


def test_vqa_ranks_answers_without_the_seg_reply(setup, tmp_path, monkeypatch):
    import functools

    import liftgs.vqa

    # exact-match scores only: the n-gram scores start a METEOR process (tested in test_vqa.py)
    monkeypatch.setattr(liftgs.vqa, "score_answers", functools.partial(liftgs.vqa.score_answers, ngrams=False))
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([
        {"question_id": "t0", "scene_id": "room0", "question": "What colour is the chair?", "answers": ["red"],
         "split": "train"},
        {"question_id": "v0", "scene_id": "room0", "question": "What colour is the table?", "answers": ["red"],
         "split": "val"},
        {"question_id": "v1", "scene_id": "room1", "question": "How many boxes?", "answers": ["three"],
         "split": "val"},
        {"question_id": "v2", "scene_id": "room9", "question": "Elsewhere?", "answers": ["no"], "split": "val"},
    ]))
    res = gl.run_language_eval(_config(setup, tmp_path / "out", tasks=("vqa",), qa=qa))
    preds = res["vqa"]["predictions"]
    assert set(preds) == {"v0", "v1"}  # room9 is not an evaluated scene
    assert all(sorted(p) == ["red", "three"] for p in preds.values())  # every answer but <SEG>, ranked
    assert "referring" not in res and (tmp_path / "out" / "report.md").is_file()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "3D question answering" in report and "answer prior (per question type)" in report
    assert set(res["vqa"]["gensplat"]["overall"]) >= {"EM@1", "EM@10"}
    assert 0.0 <= res["vqa"]["gensplat"]["overall"]["EM@1"] <= 100.0
    with pytest.raises(Exception, match="no question of split 'test'"):
        gl.run_language_eval(_config(setup, tmp_path / "out2", tasks=("vqa",), qa=qa, qa_split="test"))


def test_ablation_steps_are_paired_per_expression():
    import math

    from liftgs.eval.gensplat_language import MethodScores, ablation_steps, referring_tables

    methods = {"uniform": MethodScores(iou=[0.1, 0.2, 0.3], recall=[0.2, 0.2, float("nan")]),
               "gafs-views": MethodScores(iou=[0.2, 0.2, 0.4], recall=[0.4, 0.2, float("nan")]),
               "gafs-geometry": MethodScores(iou=[0.2, 0.5, 0.4], recall=[0.6, 0.4, float("nan")]),
               "text-to-instance": MethodScores(iou=[0.0, 0.1, 0.1])}
    steps = ablation_steps(methods)
    assert list(steps) == ["gafs-views - uniform", "gafs-geometry - gafs-views"]
    assert steps["gafs-views - uniform"]["miou"]["mean"] == pytest.approx(0.2 / 3)
    assert steps["gafs-views - uniform"]["recall"]["n"] == 2  # the NaN recall is left out
    assert steps["gafs-geometry - gafs-views"]["recall"]["mean"] == pytest.approx(0.2)
    se = steps["gafs-geometry - gafs-views"]["miou"]["se"]
    assert se == pytest.approx(0.1, abs=1e-9) and math.isfinite(se)  # diffs 0, 0.3, 0: std 0.173 / sqrt(3)
    main, ablation = referring_tables(methods)
    assert [r[0] for r in ablation.rows] == ["gafs-views − uniform", "gafs-geometry − gafs-views"]
    assert main.rows[-1][5] == "-" and main.rows[-1][6] != "-"  # no views, no recall difference
    assert len(referring_tables({"uniform": methods["uniform"]})) == 1
