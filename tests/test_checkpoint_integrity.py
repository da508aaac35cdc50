"""Damaged checkpoints and model folders are caught by their checksums, named, and skipped.

A checkpoint's ``manifest.json`` records the size and sha256 of every file; resuming skips a
damaged newest checkpoint for the newest intact one. A model folder's ``config.json`` records
the sha256 of ``model.safetensors``. The toy run (``helpers.toy_training``) checkpoints every
3 steps and keeps the last 2.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from liftgs.models import load_model
from liftgs.models.liftgs import LiftGS, build_liftgs
from liftgs.train import checkpoint as ckpt
from liftgs.train.logging import read_jsonl

from helpers.model_inputs import small_config
from helpers.toy_training import Killed, kill_at, run_toy, toy_model


def _flip_last_byte(path):
    """Flip one bit of the last byte: a tensor value changes, the file still parses."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_truncated_latest_checkpoint_falls_back_and_resumes_bitwise(tmp_path, capsys):
    full = run_toy(tmp_path / "full", steps=10)
    with pytest.raises(Killed):
        run_toy(tmp_path / "cut", steps=10, hook=kill_at(8))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "cut")] == ["step_00000003", "step_00000006"]
    bad = tmp_path / "cut" / "checkpoints" / "step_00000006" / "model" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    capsys.readouterr()

    resumed = run_toy(tmp_path / "cut", steps=10, resume=True)
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resume:")]
    assert len(said) == 1, said
    assert str(bad) in said[0] and "truncated" in said[0] and "step_00000003" in said[0]
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"weight {k} differs after falling back to step 3"
    log_full = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "full")]
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "cut")] == log_full
    # the damaged step 6 was written again on the way; every kept checkpoint is intact
    kept = ckpt.list_checkpoints(tmp_path / "cut")
    assert [p.name for p in kept] == ["step_00000009", "step_00000010"]
    for path in kept:
        ckpt.verify_checkpoint(path)


def test_damaged_checkpoint_files_are_named_before_anything_is_restored(tmp_path):
    run_toy(tmp_path, steps=3)
    step = ckpt.latest_checkpoint(tmp_path)
    manifest = json.loads((step / "manifest.json").read_text())["files"]
    assert {"model/model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_rank0.safetensors", "rng_rank0.json", "trainer.json"} <= set(manifest)
    weights = step / "model" / "model.safetensors"
    assert manifest["model/model.safetensors"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    _flip_last_byte(weights)
    load_file(str(weights))  # still a valid safetensors file: only the checksum tells
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(step, model)
    assert _one_line(err).startswith(f"{weights}: checksum mismatch")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    _flip_last_byte(weights)  # repaired
    ckpt.verify_checkpoint(step)

    rng = step / "rng_rank0.safetensors"
    rng.write_bytes(rng.read_bytes()[:-5])
    with pytest.raises(ckpt.CheckpointError, match="rng_rank0.safetensors: truncated") as err:
        ckpt.load_checkpoint(step, toy_model())
    _one_line(err)

    (step / "optimizer.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"optimizer.json: missing \(listed in manifest.json\)"):
        ckpt.verify_checkpoint(step)
    (step / "manifest.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="manifest.json: not valid JSON"):
        ckpt.verify_checkpoint(step)
    (step / "manifest.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="manifest.json: missing"):
        ckpt.verify_checkpoint(step)


def test_checkpoint_without_manifest_from_older_versions_loads_with_a_warning(tmp_path):
    run_toy(tmp_path, steps=3)
    step = ckpt.latest_checkpoint(tmp_path)
    (step / "manifest.json").unlink()
    trainer = json.loads((step / "trainer.json").read_text())
    del trainer["manifest"]
    (step / "trainer.json").write_text(json.dumps(trainer))
    model = toy_model()
    with pytest.warns(RuntimeWarning, match="no manifest.json"):
        state = ckpt.load_checkpoint(step, model, restore_rng=False)
    assert state.step == 3
    assert torch.equal(model.state_dict()["3.weight"], load_file(str(step / "model" / "model.safetensors"))["3.weight"])


def test_all_checkpoints_damaged_is_one_line_error_naming_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run_toy(run, steps=6)
    steps = ckpt.list_checkpoints(run)
    assert [p.name for p in steps] == ["step_00000003", "step_00000006"]
    for path in steps:
        _flip_last_byte(path / "optimizer.safetensors")
    log_before = (run / "log.jsonl").read_bytes()
    with pytest.raises(ckpt.CheckpointError) as err:
        run_toy(run, steps=9, resume=True)
    message = _one_line(err)
    assert message.startswith(f"{run}: no intact checkpoint")
    for path in steps:
        assert f"{path / 'optimizer.safetensors'}: checksum mismatch" in message
    # nothing was written: same checkpoints, same log
    assert ckpt.list_checkpoints(run) == steps and (run / "log.jsonl").read_bytes() == log_before
    assert not list((run / "checkpoints").glob(".tmp*"))
    # the library call without a callback warns instead of printing
    with pytest.warns(RuntimeWarning, match="step_00000006.*optimizer.safetensors: checksum mismatch"):
        _flip_last_byte(steps[0] / "optimizer.safetensors")  # step 3 intact again
        assert ckpt.latest_checkpoint(run, verify=True) == steps[0]
    assert ckpt.latest_checkpoint(run) == steps[1]  # unverified: the newest, as before


def test_model_folder_checksum(tmp_path):
    torch.manual_seed(0)
    model = build_liftgs(small_config())
    folder = model.save_pretrained(tmp_path / "model")
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    doc = json.loads(config_file.read_text())
    assert doc["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # identical weights give identical bytes, hence the same checksum
    again = model.save_pretrained(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == weights.read_bytes()
    assert (again / "config.json").read_bytes() == config_file.read_bytes()

    _flip_last_byte(weights)
    load_file(str(weights))  # parses: only the checksum tells
    for load in (LiftGS.from_pretrained, load_model):
        with pytest.raises(ValueError) as err:
            load(folder)
        assert _one_line(err).startswith(f"{weights}: checksum mismatch")
    _flip_last_byte(weights)
    loaded = load_model(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))

    config_file.write_text(json.dumps({**doc, "weights_sha256": "abc"}))
    with pytest.raises(ValueError, match=r"config.json: .*field 'weights_sha256'") as err:
        LiftGS.from_pretrained(folder)
    _one_line(err)
    del doc["weights_sha256"]  # a folder written before the checksum: loads, with a warning
    config_file.write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="no 'weights_sha256'"):
        LiftGS.from_pretrained(folder)


def test_damaged_model_in_a_run_checkpoint_is_named_by_load_model(tmp_path):
    torch.manual_seed(0)
    ckpt.save_checkpoint(tmp_path / "run", 1, build_liftgs(small_config()))
    weights = tmp_path / "run" / "checkpoints" / "step_00000001" / "model" / "model.safetensors"
    _flip_last_byte(weights)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "run")
    assert _one_line(err).startswith(f"{weights}: checksum mismatch")
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors: checksum mismatch"):
        ckpt.load_checkpoint(tmp_path / "run", build_liftgs(small_config()), restore_rng=False)
