"""The demo's whole pipeline on a tiny budget: every stage runs and the report is written."""

from __future__ import annotations

import json

import pytest

from liftgs.demo import DemoConfig, run_demo


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cfg = DemoConfig(out=out, rooms=5, pretrain_steps=2, finetune_steps=1, fractions=(0.5, 1.0), noise=0.1)
    report = run_demo(cfg)
    text = report.read_text()
    for heading in ("Zero-shot grounding", "Fine-tuning: scratch vs pre-trained", "Examples", "Timings"):
        assert heading in text
    shown = [line for line in text.splitlines() if line.startswith("![view 0](examples/")]
    assert shown and all((out / line.split("(")[1].split(")")[0]).is_file() for line in shown)
    results = json.loads((out / "results.json").read_text())
    rows = results["results"]["finetune"]
    assert {(r["init"], r["fraction"]) for r in rows} == {(i, f) for i in ("scratch", "pretrained")
                                                          for f in (0.5, 1.0)}
    assert (out / "scaling.png").stat().st_size > 0
    # a second run reuses every stage (no retraining: the run folders are complete)
    mtime = (out / "pretrain" / "model" / "config.json").stat().st_mtime
    run_demo(cfg)
    assert (out / "pretrain" / "model" / "config.json").stat().st_mtime == mtime
    # a demo of another size retrains the runs whose settings differ, and only those
    ft = out / "finetune_scratch_1"
    ft_mtime = (ft / "model" / "config.json").stat().st_mtime
    run_demo(DemoConfig(out=out, rooms=5, pretrain_steps=2, finetune_steps=2, fractions=(1.0,), noise=0.1))
    assert (out / "pretrain" / "model" / "config.json").stat().st_mtime == mtime
    assert (ft / "model" / "config.json").stat().st_mtime != ft_mtime
    assert json.loads((ft / "config.json").read_text())["finetune"]["steps"] == 2
    assert (out / "finetune_scratch_1.stale" / "model").is_dir()


def test_demo_config_errors():
    with pytest.raises(ValueError, match="rooms"):
        DemoConfig(rooms=2)
    with pytest.raises(ValueError, match="fractions"):
        DemoConfig(fractions=(0.0,))
