"""Recipe configs: a run's saved config.json given back with --config, flags on top, clear
errors for files that do not fit; the loop's fields shared by every recipe config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from liftgs.cli import main as cli_main
from liftgs.config import ConfigError, to_dict, update_config
from liftgs.recipes import finetune, pretrain
from liftgs.recipes.common import parse_recipe_config
from liftgs.train.loop import LoopConfig, RunConfig
from liftgs.train.optim import OptimConfig

PRETRAIN_FLAGS = ["--data", "rooms", "--labels", "labels", "--out", "runs/a", "--steps", "5",
                  "--optim.lr", "0.0025", "--losses", "ground", "--no-tensorboard", "--split", "val"]


def parse(argv, recipe=pretrain, name="pretrain"):
    config_cls = recipe.PretrainConfig if recipe is pretrain else recipe.FinetuneConfig
    return parse_recipe_config(argv, config_cls, recipe.PRESETS, name)


def save_run_config(path: Path, name: str, config) -> Path:
    """What ``run_pretrain`` / ``run_finetune`` write to RUN/config.json."""
    path.write_text(json.dumps({"recipe": name, name: to_dict(config), "model": {"num_queries": 6},
                                "num_scenes": 3, "world_size": 1}, indent=2))
    return path


def test_a_saved_run_config_gives_back_the_same_config(tmp_path):
    config = parse(PRETRAIN_FLAGS)
    assert config.steps == 5 and config.optim.lr == 0.0025 and config.data == Path("rooms")
    saved = save_run_config(tmp_path / "config.json", "pretrain", config)
    assert parse(["--config", str(saved)]) == config
    assert parse([f"--config={saved}"]) == config
    # the paper preset's values survive the round trip (not reset to the tiny defaults)
    ft = parse(["--preset", "paper", "--data", "scans", "--init", "runs/pre", "--task", "refer"], finetune, "finetune")
    assert ft.steps == 50000 and ft.optim == finetune.PRESETS["paper"].optim
    saved = save_run_config(tmp_path / "ft.json", "finetune", ft)
    assert parse(["--config", str(saved)], finetune, "finetune") == ft


def test_flags_override_the_saved_config(tmp_path):
    config = parse(PRETRAIN_FLAGS)
    saved = save_run_config(tmp_path / "config.json", "pretrain", config)
    again = parse(["--config", str(saved), "--steps", "9", "--resume", "--optim.warmup-steps", "3"])
    assert (again.steps, again.resume, again.optim.warmup_steps) == (9, True, 3)
    assert again == dataclasses.replace(config, steps=9, resume=True,
                                        optim=dataclasses.replace(config.optim, warmup_steps=3))


def test_a_bare_settings_file_fills_the_rest_from_its_preset(tmp_path):
    bare = tmp_path / "settings.json"
    bare.write_text(json.dumps({"data": "rooms", "labels": "labels", "steps": 12, "optim": {"lr": 0.01}}))
    config = parse(["--config", str(bare)])
    assert config == dataclasses.replace(pretrain.PRESETS["tiny"], data=Path("rooms"), labels=Path("labels"),
                                         steps=12, optim=dataclasses.replace(OptimConfig(), lr=0.01))
    bare.write_text(json.dumps({"preset": "paper", "data": "rooms"}))
    paper = parse(["--config", str(bare)])
    assert paper == dataclasses.replace(pretrain.PRESETS["paper"], data=Path("rooms"))


@pytest.mark.parametrize("content,message", [
    ({"recipe": "finetune", "finetune": {}}, "recipe is 'finetune', not 'pretrain'"),
    ({"recipe": "pretrain", "pretrain": {"steps": 5, "bogus": 1}}, "unknown field 'pretrain.bogus'"),
    ({"recipe": "pretrain", "pretrain": {"optim": {"lr": "fast"}}}, "pretrain.optim.lr must be a number"),
    ({"recipe": "pretrain", "pretrain": {"steps": 0}}, "steps must be >= 1"),
    ({"recipe": "pretrain", "pretrain": {"losses": "all"}}, "pretrain.losses must be one of"),
    ({"recipe": "pretrain"}, "no 'pretrain' field"),
    ({"init": "runs/pre", "task": "refer"}, "unknown field 'init'"),  # bare finetune settings
    ([1, 2], "expected a JSON object"),
])
def test_a_config_file_that_does_not_fit_gives_one_line_naming_file_and_field(tmp_path, capsys, content,
                                                                               message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        parse(["--config", str(path)])
    assert cli_main(["pretrain", "--config", str(path)]) == 2  # nothing runs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"liftgs pretrain: {path}: ") and message in err[0]


def test_a_missing_or_broken_config_file(tmp_path, capsys):
    assert cli_main(["pretrain", "--config", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err.strip() == f"liftgs pretrain: {tmp_path / 'nope.json'}: no such config file"
    (tmp_path / "bad.json").write_text("{steps: 3")
    assert cli_main(["pretrain", "--config", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    assert cli_main(["pretrain", "--steps", "3", "--config"]) == 2
    assert "--config needs a FILE" in capsys.readouterr().err


def test_update_config_converts_json_values_and_keeps_the_base():
    base = pretrain.PretrainConfig()
    new = update_config(base, {"split": None, "out": "runs/x", "optim": {"betas": [0.8, 0.9]}}, "f.json")
    assert new.split is None and new.out == Path("runs/x") and new.optim.betas == (0.8, 0.9)
    assert base.split == "train" and base.optim.betas == (0.9, 0.999)  # base untouched
    with pytest.raises(ConfigError, match=r"f.json: steps must be an integer, got a boolean"):
        update_config(base, {"steps": True}, "f.json")
    with pytest.raises(ConfigError, match=r"f.json: data must be a path \(string\) or null"):
        update_config(base, {"data": 3}, "f.json")


def test_recipe_configs_hold_the_loop_fields_once():
    loop_names = [f.name for f in dataclasses.fields(LoopConfig)]
    run_names = [f.name for f in dataclasses.fields(RunConfig)]
    assert run_names[:len(loop_names)] == loop_names and set(run_names) - set(loop_names) == {
        "resume", "device", "optim"}
    config = pretrain.PretrainConfig(steps=7, batch_size=3, seed=4, log_every=2, ckpt_every=5, keep_last=0,
                                     tensorboard=False, progress=False)
    assert config.loop_config() == LoopConfig(7, 3, 4, 2, 5, 0, False, False)
    # the recipes' defaults, and the keys every saved config.json has held
    assert (LoopConfig().steps, LoopConfig().batch_size, LoopConfig().log_every) == (2000, 2, 10)
    assert {"steps", "batch_size", "seed", "resume", "ckpt_every", "keep_last", "log_every", "device",
            "tensorboard", "progress", "optim"} <= set(to_dict(finetune.FinetuneConfig()))
    with pytest.raises(ValueError, match="keep_last"):
        finetune.FinetuneConfig(keep_last=-1)
    with pytest.raises(ValueError, match="log_every"):
        pretrain.PretrainConfig(log_every=0)
