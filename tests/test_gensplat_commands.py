"""``liftgs ground --model gensplat`` and ``liftgs answer`` end to end on a fabricated room, its
stand-in reconstruction and a fresh tiny GenSplat stage-III bundle (untrained: the tests check
the commands' outputs and errors, not what the model finds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

ANSWERS = ["<SEG>", "yes", "no"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A room (scene directory), its reconstruction, a tiny stage-III bundle (as a run folder)
    and a GAFS scorer run recording the hashing text encoder."""
    from liftgs.io import write_scene
    from liftgs.models import build_model
    from liftgs.models.gensplat.compact import CompactConfig, CompactReasoner
    from liftgs.models.gensplat.gafs import FrameScorer, FrameScorerConfig
    from liftgs.models.gensplat.referring import ReferringConfig, ReferringDecoder
    from liftgs.recipes.gensplat_language import GenSplatLanguage, LanguageSettings
    from liftgs.testing import fabricate_scene
    from liftgs.testing.splats import write_point_recon

    root = tmp_path_factory.mktemp("gscommands")
    scene, _ = fabricate_scene("room0", seed=0)
    write_scene(scene, root / "data")
    write_point_recon(root / "data", root / "recon")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        stage2 = build_model("gensplat", "tiny", 32)
        c = stage2.config
        reasoner = CompactReasoner(ANSWERS, CompactConfig(seg_dim=c.hidden_dim, context_dim=c.latent_dim + 9,
                                                          image_size=32, max_views=4))
        referring = ReferringDecoder(ReferringConfig.from_gensplat(c, seg_dim=c.hidden_dim))
        settings = LanguageSettings(num_views=2, image_size=32, max_per_view=64)
        GenSplatLanguage(reasoner, referring, stage2, settings).save_pretrained(root / "lang" / "model")
        scorer = FrameScorer(FrameScorerConfig(text_dim=16, latent_dim=c.latent_dim, dim=16, embed_dim=16,
                                               num_heads=2, ffn_dim=32, cnn_channels=(8,), image_size=32))
        scorer.save_pretrained(root / "gafs" / "model")
    (root / "gafs" / "config.json").write_text(json.dumps({"recipe": "gensplat-frames", "text_encoder": "hash-16"}))
    return {"root": root, "scene": root / "data" / "room0", "recon": root / "recon", "lang": root / "lang",
            "gafs": root / "gafs", "num_points": len(scene.points), "num_frames": len(scene.frames)}


def cli(args, capsys):
    from liftgs.cli import main

    rc = main([str(a) for a in args])
    return rc, capsys.readouterr()


def test_ground_with_gensplat_writes_the_liftgs_outputs(world, tmp_path, capsys):
    out = tmp_path / "g"
    rc, io = cli(["ground", world["scene"], "the chair", "--model", "gensplat", "--checkpoint", world["lang"],
                  "--recon", world["recon"], "--out", out, "--views", "1", "--image-size", "96"], capsys)
    assert rc == 0, io.err
    doc = json.loads((out / "grounding.json").read_text())
    assert doc["model"] == "gensplat" and doc["frame_selection"] == "uniform"
    assert len(doc["frames"]) == 2 and all(0 <= f < world["num_frames"] for f in doc["frames"])
    assert doc["num_gaussians"] == world["num_points"]  # one stand-in Gaussian per point
    assert len(doc["masks"]) <= 1 and "sigmoid" in doc["score_rule"]
    ids = np.load(out / "point_mask_ids.npy")
    assert len(doc["point_mask_ids"]) == len(ids) == world["num_points"]
    assert set(np.unique(ids)) <= {-1, 0}
    if doc["masks"]:
        assert doc["masks"][0]["num_points"] == int((ids == 0).sum())
        assert 0.5 <= doc["masks"][0]["score"] <= 1.0  # mean logit of Gaussians above the 0.5 threshold
    assert (out / "highlight.ply").is_file() and (out / "view_0.png").is_file()
    assert "frames (uniform): " in io.out


def test_ground_with_gafs_frames(world, tmp_path, capsys):
    out = tmp_path / "g"
    rc, io = cli(["ground", world["scene"], "the chair", "--model", "gensplat", "--checkpoint", world["lang"] / "model",
                  "--recon", world["recon"], "--frames", world["gafs"], "--out", out, "--views", "0",
                  "--cache", tmp_path / "cache"], capsys)
    assert rc == 0, io.err
    doc = json.loads((out / "grounding.json").read_text())
    assert doc["frame_selection"] == "gafs" and doc["frames_run"] == str(world["gafs"])
    assert 1 <= len(doc["frames"]) <= 2 and len(set(doc["frames"])) == len(doc["frames"])
    assert (tmp_path / "cache" / "room0.safetensors").is_file()
    assert not list(out.glob("view_*.png"))


def test_answer_prints_and_writes_ranked_answers(world, tmp_path, capsys):
    file = tmp_path / "sub" / "answer.json"
    rc, io = cli(["answer", world["scene"], "is there a chair?", "--checkpoint", world["lang"], "--recon",
                  world["recon"], "--frames", world["gafs"], "--top", "5", "--json", file], capsys)
    assert rc == 0, io.err
    doc = json.loads(file.read_text())
    assert sorted(doc["answers"]) == ["no", "yes"]  # every answer but <SEG>, best first
    assert doc["question"] == "is there a chair?" and doc["scene_id"] == "room0"
    assert doc["frame_selection"] == "gafs" and all(0 <= f < world["num_frames"] for f in doc["frames"])
    assert f"1. {doc['answers'][0]}" in io.out and "frames (gafs): " in io.out
    rc, io = cli(["answer", world["scene"], "is there a chair?", "--checkpoint", world["lang"], "--recon",
                  world["recon"], "--top", "1", "--num-views", "3"], capsys)
    assert rc == 0, io.err
    assert "1. " in io.out and "2. " not in io.out and "frames (uniform): 0, 1, 2" in io.out


def test_bad_inputs_are_one_line_errors(world, tmp_path, capsys):
    (tmp_path / "recon").mkdir()
    good = ["--checkpoint", world["lang"], "--recon", world["recon"]]
    cases = [
        (["ground", world["scene"] / "points.ply", "a chair", "--model", "gensplat", *good], "bare point cloud"),
        (["ground", world["scene"], "a chair", "--model", "gensplat", "--recon", world["recon"]], "--checkpoint"),
        (["ground", world["scene"], "a chair", "--model", "gensplat", "--checkpoint", world["lang"]], "--recon"),
        (["ground", world["scene"], "a chair", "--model", "gensplat", "--checkpoint", world["lang"], "--recon",
          tmp_path / "recon"], "room0/gaussians.ply: missing"),
        (["ground", world["scene"], "a chair", "--model", "gensplat", "--checkpoint", tmp_path / "none", "--recon",
          world["recon"]], "language.json: missing"),
        (["answer", world["scene"], "a chair?", "--recon", world["recon"]], "--checkpoint"),
        (["answer", world["scene"], "a chair?", "--checkpoint", world["lang"]], "--recon"),
        (["answer", world["scene"] / "points.ply", "a chair?", *good], "bare point cloud"),
        (["answer", world["scene"], "a chair?", "--checkpoint", world["lang"], "--recon", tmp_path / "recon"],
         "liftgs recon"),
        (["answer", world["scene"], "a chair?", "--checkpoint", tmp_path / "none", "--recon", world["recon"]],
         "language.json: missing"),
        (["answer", world["scene"], "a chair?", *good, "--frames", tmp_path / "none"], "frames.json: missing"),
    ]
    for args, expected in cases:
        rc, io = cli(args, capsys)
        assert rc == 2, (args, io.err)
        lines = io.err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, io.err)
        assert lines[0].startswith(f"liftgs {args[0]}: ")


def test_gafs_text_width_is_checked(world, tmp_path, capsys):
    rc, io = cli(["answer", world["scene"], "a chair?", "--checkpoint", world["lang"], "--recon", world["recon"],
                  "--frames", world["gafs"], "--text-encoder", "hash-8"], capsys)
    assert rc == 2 and "16-d text vectors" in io.err and len(io.err.strip().splitlines()) == 1
