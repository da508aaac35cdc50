"""The demo's pipelines on a tiny budget: every stage runs and the report is written."""

from __future__ import annotations

import json

import pytest

from liftgs.demo import FINETUNED, PRETRAINED, DemoConfig, run_demo

TINY = dict(heldout_rooms=1, pretrain_rooms=5, finetune_rooms=5, pretrain_steps=2, finetune_steps=1,
            curve_steps=1, fractions=(0.5, 1.0), noise=0.1, room_preset="quick")


def test_full_demo_trains_exports_and_the_quick_demo_uses_the_export(tmp_path):
    out, weights = tmp_path / "full", tmp_path / "weights"
    cfg = DemoConfig(out=out, export_weights=weights, **TINY)
    text = run_demo(cfg).read_text()
    for heading in ("Zero-shot grounding", "Fine-tuned: referring expressions", "Fine-tuning: scratch vs pre-trained",
                    "Training loss", "Examples", "Timings"):
        assert heading in text
    results = json.loads((out / "results.json").read_text())["results"]
    assert {(r["init"], r["fraction"]) for r in results["finetune"]} == {
        (i, f) for i in ("scratch", "pretrained") for f in (0.5, 1.0)}
    assert 0 <= results["finetuned"]["random_acc@0.25"] <= 1 and results["finetuned"]["n_expressions"] > 0
    for png in ("scaling.png", "loss.png", "examples/grid.png"):
        assert (out / png).stat().st_size > 0
    for name in (PRETRAINED, FINETUNED):  # model folders with the run's config beside them
        assert {p.name for p in (weights / name).iterdir()} == {"config.json", "model.safetensors", "run_config.json"}
    assert json.loads((weights / FINETUNED / "run_config.json").read_text())["recipe"] == "finetune"
    # a second run reuses the finished runs; those trained with other settings are retrained
    mtime = (out / "pretrain" / "model" / "config.json").stat().st_mtime
    ft = out / "curve_scratch_1"
    ft_mtime = (ft / "model" / "config.json").stat().st_mtime
    run_demo(DemoConfig(out=out, **{**TINY, "curve_steps": 2, "fractions": (1.0,)}))
    assert (out / "pretrain" / "model" / "config.json").stat().st_mtime == mtime
    assert (ft / "model" / "config.json").stat().st_mtime != ft_mtime
    assert json.loads((ft / "config.json").read_text())["finetune"]["steps"] == 2
    assert (out / "curve_scratch_1.stale" / "model").is_dir()

    quick = tmp_path / "quick"
    text = run_demo(DemoConfig(out=quick, quick=True, weights=weights, heldout_rooms=1, brief_steps=2,
                               room_preset="quick")).read_text()
    for heading in ("Zero-shot grounding", "Fine-tuned: referring expressions", "Training loss", "Examples"):
        assert heading in text
    assert "scratch vs pre-trained" not in text and str(weights / FINETUNED) in text
    assert len(json.loads((quick / "brief_training" / "log.jsonl").read_text().splitlines()[-1])) > 0


def test_demo_config_errors(tmp_path):
    with pytest.raises(ValueError, match="pretrain-rooms"):
        DemoConfig(pretrain_rooms=2)
    with pytest.raises(ValueError, match="fractions"):
        DemoConfig(fractions=(0.0,))
    with pytest.raises(ValueError, match="export-weights"):
        DemoConfig(quick=True, export_weights=tmp_path)
    with pytest.raises(ValueError, match="no model folder"):
        run_demo(DemoConfig(out=tmp_path / "d", quick=True, weights=tmp_path))
    assert not (tmp_path / "d").exists()  # refused before any work
