"""``liftgs finetune`` and ``liftgs eval`` through the command line, on three tiny rooms.

The rooms are fabricated here (three coloured boxes on a floor, one referring expression per
object plus one naming an absent object); the text encoder is the library's ``hash-32``
stand-in, so nothing is downloaded and a run takes seconds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from liftgs.cli import main
from liftgs.io import write_scene, write_splits
from liftgs.types import Expression, ObjectInfo, Scene

ENCODER = "hash-32"
LAYOUT = (("chair", "red"), ("table", "green"), ("lamp", "blue"))


def make_room(scene_id: str, seed: int) -> Scene:
    """Three objects of 150 points in 0.4 m cubes along x, 80 unlabelled floor points."""
    rng = np.random.default_rng(seed)
    pts, cols, ids, objects, exprs = [], [], [], {}, []
    for k, (cat, colour) in enumerate(LAYOUT):
        pts.append(rng.random((150, 3)) * 0.4 + [0.8 * k, rng.uniform(0, 0.5), 0.0])
        cols.append(np.tile({"red": [0.9, 0.1, 0.1], "green": [0.1, 0.8, 0.2], "blue": [0.1, 0.2, 0.9]}[colour],
                            (150, 1)))
        ids.append(np.full(150, k))
        objects[k] = ObjectInfo(cat, {"color": colour})
        text = f"the {colour} {cat}"
        exprs.append(Expression(text=text, target_ids=[k], spans=[(4, len(text))]))
    exprs.append(Expression(text="the piano", target_ids=[], spans=[(4, 9)]))
    pts.append(np.c_[rng.random((80, 2)) * [2.4, 1.0], np.zeros(80)])
    cols.append(np.full((80, 3), 0.5))
    ids.append(np.full(80, -1))
    return Scene(scene_id=scene_id, points=np.concatenate(pts).astype(np.float32),
                 colors=np.concatenate(cols).astype(np.float32), instance_ids=np.concatenate(ids).astype(np.int32),
                 objects=objects, expressions=exprs)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    for i in range(3):
        write_scene(make_room(f"room{i}", seed=i), root)
    write_splits(root, {"train": ["room0", "room1"], "val": ["room2"]})
    return root


@pytest.fixture(scope="module")
def finetuned(data, tmp_path_factory):
    """A two-step fine-tuning run made by ``liftgs finetune`` (the run folder)."""
    out = tmp_path_factory.mktemp("ft") / "run"
    rc = main(["finetune", "--data", str(data), "--out", str(out), "--text-encoder", ENCODER, "--steps", "2",
               "--batch-size", "1", "--ckpt-every", "1", "--keep-last", "0", "--log-every", "1",
               "--device", "cpu", "--no-tensorboard", "--no-progress"])
    assert rc == 0
    return out


def _stderr_line(capsys) -> str:
    """The single line a failed command writes to stderr (no traceback)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_finetune_cli_writes_a_complete_run(finetuned):
    config = json.loads((finetuned / "config.json").read_text())
    assert config["recipe"] == "finetune" and config["text_encoder"] == ENCODER
    assert config["finetune"]["steps"] == 2 and config["num_scenes"] == 2  # the train split only
    assert config["model"]["text_dim"] == 32
    assert sorted(p.name for p in (finetuned / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    assert (finetuned / "model" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (finetuned / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all(math.isfinite(v) and v > 0 for v in losses)  # a matching loss on real targets is positive


def _eval(checkpoint, data, out, capsys) -> dict:
    rc = main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--text-encoder", ENCODER,
               "--out", str(out), "--top-k", "3"])
    assert rc == 0
    assert f"wrote {out / 'metrics.md'}" in capsys.readouterr().out
    return json.loads((out / "metrics.json").read_text())


def test_eval_cli_scores_a_run_folder_like_its_model_folder(finetuned, data, tmp_path, capsys):
    from liftgs.eval.cli import EvalConfig, run_checkpoint
    from liftgs.eval.runner import ModelGrounder
    from liftgs.models import load_model
    from liftgs.text import load_text_encoder

    doc = _eval(finetuned, data, tmp_path / "run", capsys)
    assert doc["instseg"]["classes"]["names"] == ["chair", "lamp", "table"]  # the val room's categories
    summary = doc["instseg"]["summary"]
    assert set(summary) == {"ap", "ap50", "ap25"}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in summary.values())  # null would be NaN
    overall = doc["grounding"]["accuracy"]["overall"]
    assert overall["n"] == 3 and doc["grounding"]["f1"]["overall"]["n"] == 4  # 3 single-target + "the piano"
    assert 0.0 <= overall["acc@0.5"] <= overall["acc@0.25"] <= 1.0 and 0.0 <= overall["miou"] <= 1.0
    assert doc["config"]["checkpoint"] == str(finetuned)
    # the model folder and the last checkpoint hold the same weights: the same numbers
    for other in (finetuned / "model", finetuned / "checkpoints" / "step_00000002"):
        again = _eval(other, data, tmp_path / other.name, capsys)
        assert again["instseg"] == doc["instseg"] and again["grounding"] == doc["grounding"]
    # and they are the numbers the library computes for that model
    model = load_model(finetuned).eval()
    res = run_checkpoint(EvalConfig(checkpoint=finetuned, data=data, out=tmp_path / "api", top_k=3),
                         grounder=ModelGrounder(model, load_text_encoder(ENCODER), top_k=3))
    assert res.instseg.summary() == pytest.approx(summary)
    assert res.accuracy["overall"] == pytest.approx(overall)


def test_user_mistakes_give_one_line_errors(finetuned, data, tmp_path, capsys):
    assert main(["finetune", "--out", str(tmp_path / "ft"), "--text-encoder", ENCODER]) == 2
    assert _stderr_line(capsys) == "liftgs finetune: finetune needs --data DIR (scene directories with 3D labels)"
    assert main(["finetune", "--data", str(data), "--init", str(tmp_path / "nope"), "--out", str(tmp_path / "ft"),
                 "--text-encoder", ENCODER, "--steps", "1", "--no-progress", "--no-tensorboard"]) == 2
    assert _stderr_line(capsys) == f"liftgs finetune: {tmp_path / 'nope'}: model weights not found"
    assert main(["eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(data),
                 "--text-encoder", ENCODER, "--out", str(tmp_path / "e")]) == 2
    assert _stderr_line(capsys) == f"liftgs eval: {tmp_path / 'nope'}: model weights not found"
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(data),  # a folder without weights
                 "--text-encoder", ENCODER, "--out", str(tmp_path / "e")]) == 2
    assert _stderr_line(capsys).startswith(f"liftgs eval: {tmp_path}: not a model folder")
    assert main(["eval", "--checkpoint", str(finetuned), "--data", str(tmp_path / "nodata"),
                 "--text-encoder", ENCODER]) == 2
    assert _stderr_line(capsys) == f"liftgs eval: {tmp_path / 'nodata'}: dataset root is not a directory"
    assert not (tmp_path / "e").exists()  # nothing written by a failed evaluation
    # incomplete options are refused before anything runs
    assert main(["eval", "--checkpoint", str(finetuned), "--out", str(tmp_path / "e")]) == 2
    assert _stderr_line(capsys) == "liftgs eval: evaluating a model needs both --checkpoint DIR and --data DIR"
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_a_device_the_machine_lacks_is_refused_at_the_door(finetuned, data, tmp_path, capsys):
    room = data / sorted(p.name for p in data.iterdir() if p.is_dir())[0]
    commands = {
        "finetune": ["--data", str(data), "--out", str(tmp_path / "ft"), "--text-encoder", ENCODER],
        "pretrain": ["--data", str(data), "--labels", str(tmp_path / "labels"), "--out", str(tmp_path / "pre")],
        "eval": ["--checkpoint", str(finetuned), "--data", str(data), "--out", str(tmp_path / "e")],
        "ground": [str(room), "a chair", "--checkpoint", str(finetuned), "--out", str(tmp_path / "g")],
        "pseudolabel": ["--scenes", str(data), "--out", str(tmp_path / "labels")],
        "demo": ["--out", str(tmp_path / "demo")],
        "view": [str(room), "--checkpoint", str(finetuned), "--port", "0"],
        "gensplat-semantic": ["--data", str(data), "--recon", str(tmp_path), "--labels", str(tmp_path),
                              "--out", str(tmp_path / "gs")],
        "gensplat-instance": ["--data", str(data), "--recon", str(tmp_path), "--out", str(tmp_path / "gs")],
        "gensplat-eval": ["--model", str(tmp_path), "--data", str(data), "--recon", str(tmp_path),
                          "--out", str(tmp_path / "ge")],
    }
    for command, args in commands.items():
        assert main([command, *args, "--device", "cuda"]) == 2, command
        line = _stderr_line(capsys)
        assert line.startswith(f"liftgs {command}: --device cuda: this machine has no usable CUDA device"), line
    assert main(["ground", str(room), "a chair", "--device", "gpu"]) == 2
    assert _stderr_line(capsys) == "liftgs ground: --device must be cpu, cuda or cuda:N, got 'gpu'"
    assert not [p for p in tmp_path.iterdir() if p.name in ("ft", "pre", "e", "g", "labels", "demo", "gs", "ge")]


def test_installed_command_exit_code_and_message(data, tmp_path):
    """The real process: exit status 2 and one line on stderr, not a traceback."""
    proc = subprocess.run([sys.executable, "-m", "liftgs.cli", "eval", "--checkpoint", str(tmp_path / "nope"),
                           "--data", str(data), "--text-encoder", ENCODER, "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"liftgs eval: {tmp_path / 'nope'}: model weights not found"]
