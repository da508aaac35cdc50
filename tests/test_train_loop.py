"""Training infrastructure: checkpoints, exact resume, sampler, schedule, logs.

Uses a toy model (MLP with dropout, ``helpers.toy_training``) so these tests need none of the
model / render code. The loop's 2-process DDP checks run in ``test_pretrain``'s DDP test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from liftgs.train import checkpoint as ckpt
from liftgs.train.distributed import shard_positions
from liftgs.train.logging import read_jsonl
from liftgs.train.optim import OptimConfig, lr_factor
from liftgs.train.sampler import EpochSampler, subsample_indices

from helpers.toy_training import Killed, kill_at, run_toy, toy_model


def test_exact_resume_is_bitwise(tmp_path):
    full = run_toy(tmp_path / "full", steps=10)
    with pytest.raises(Killed):
        run_toy(tmp_path / "cut", steps=10, hook=kill_at(5))  # last checkpoint: step 3
    assert ckpt.latest_checkpoint(tmp_path / "cut").name == "step_00000003"
    resumed = run_toy(tmp_path / "cut", steps=10, resume=True)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"weight {k} differs after resume"
    # the JSONL log of the resumed run reads like the uninterrupted one
    log_full = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "full")]
    log_cut = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "cut")]
    assert log_full == log_cut and len(log_full) == 10


def test_checkpoint_atomic_no_pickle_and_keep_last(tmp_path):
    run_toy(tmp_path, steps=10)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_00000009", "step_00000010"]  # keep_last=2
    latest = ckpt.latest_checkpoint(tmp_path)
    files = sorted(p.name for p in latest.rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    assert {"trainer.json", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_rank0.safetensors", "rng_rank0.json"} <= set(files)
    # loads with safetensors / json only, into a fresh model and optimiser
    model = toy_model()
    state = ckpt.load_checkpoint(latest, model, restore_rng=False)
    assert state.step == 10 and state.config == {"seed": 3}
    weights = load_file(str(latest / "model" / "model.safetensors"))
    assert torch.equal(weights["3.weight"], model.state_dict()["3.weight"])
    # a leftover temporary dir (a kill mid-write) is never taken for a checkpoint
    (tmp_path / "checkpoints" / ".tmp_step_00000011").mkdir()
    (tmp_path / "checkpoints" / "step_00000012").mkdir()  # incomplete: no trainer.json
    assert ckpt.latest_checkpoint(tmp_path) == latest


def test_bad_checkpoint_dirs_give_clear_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope", toy_model())
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint"):
        ckpt.load_checkpoint(tmp_path, toy_model())
    run_toy(tmp_path / "run", steps=3)
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError, match="do not match the model"):
        ckpt.load_checkpoint(latest, nn.Linear(4, 1))
    (latest / "scheduler.json").write_text("{not json")  # caught by the manifest before parsing
    with pytest.raises(ckpt.CheckpointError, match="scheduler.json: truncated or altered"):
        ckpt.load_checkpoint(latest, toy_model(), scheduler=torch.optim.lr_scheduler.LambdaLR(
            torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), lambda s: 1.0))
    with pytest.raises(ckpt.CheckpointError, match="pass --resume"):
        run_toy(tmp_path / "run", steps=3)  # fresh run into a dir with checkpoints


def test_rng_state_roundtrip():
    import random

    tensors, info = ckpt.capture_rng_state()
    info = json.loads(json.dumps(info))  # must survive JSON
    a = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.restore_rng_state(tensors, info)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_sampler_is_pure_and_sharding_covers_batch():
    s1, s2 = EpochSampler(10, seed=1), EpochSampler(10, seed=1)
    order = [s1.item(p) for p in range(30)]
    assert [s2.item(p) for p in reversed(range(30))] == order[::-1]  # no hidden state
    for e in range(3):
        assert sorted(order[e * 10:(e + 1) * 10]) == list(range(10))  # each epoch a permutation
    assert order[:10] != order[10:20]
    ranks = shard_positions(5, 2, 0, 2) + shard_positions(5, 2, 1, 2)
    assert ranks == shard_positions(5, 4, 0, 1)
    small, big = subsample_indices(100, 0.1), subsample_indices(100, 0.5)
    assert len(small) == 10 and len(big) == 50 and set(small) <= set(big)
    assert np.array_equal(small, subsample_indices(100, 0.1))


def test_lr_schedule():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    f = [lr_factor(s, 14, cfg) for s in range(15)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == pytest.approx(1.0) and f[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))
    with pytest.raises(ValueError, match="grad_clip"):
        OptimConfig(grad_clip=-1)


def test_logger_writes_tensorboard_and_jsonl(tmp_path):
    from liftgs.train.logging import TrainLogger

    with TrainLogger(tmp_path, total_steps=3, show_progress=False) as log:
        for step in (1, 2, 3):
            log.log(step, {"loss": 1.0 / step, "lr": 1e-4})
            log.advance()
    assert [r["loss"] for r in read_jsonl(tmp_path)] == [1.0, 0.5, 1.0 / 3]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # resuming at step 2 drops the later record (written by the killed run)
    TrainLogger(tmp_path, total_steps=3, start_step=2, tensorboard=False, show_progress=False).close()
    assert [r["step"] for r in read_jsonl(tmp_path)] == [1, 2]


def test_collectives_run_on_the_process_device(monkeypatch):
    """Under nccl the reductions hand CUDA tensors to the collective (nccl refuses CPU ones)
    and return on the caller's device; under gloo they stay on the CPU."""
    import liftgs.train.distributed as d

    class Reached(Exception):
        pass

    monkeypatch.setattr(d.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(d.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(d.dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(d.torch.cuda, "current_device", lambda: 3)
    assert d.collective_device() == torch.device("cuda", 3)
    seen = []

    def nccl_like(t, op=None):  # the device the collective would receive, then stop
        seen.append(t.device)
        raise Reached

    monkeypatch.setattr(d.dist, "all_reduce", nccl_like)
    monkeypatch.setattr(d, "collective_device", lambda: torch.device("meta"))  # stands in for cuda:3
    for call in (lambda: d.normaliser(3), lambda: d.reduce_scalars({"loss": 1.0}),
                 lambda: d.all_reduce_mean(torch.ones(2))):
        with pytest.raises(Reached):
            call()
    assert seen == [torch.device("meta")] * 3

    monkeypatch.undo()
    monkeypatch.setattr(d.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(d.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(d.dist, "get_backend", lambda: "gloo")
    assert d.collective_device() == torch.device("cpu")

    def gloo_like(t, op=None):  # two ranks holding the same values
        assert t.device.type == "cpu"
        t.mul_(2)

    monkeypatch.setattr(d.dist, "all_reduce", gloo_like)
    assert d.normaliser(3) == 3.0 and d.reduce_scalars({"a": 1.5, "b": 2.0}) == {"a": 1.5, "b": 2.0}
    from liftgs.losses.criterion import distributed_count

    assert distributed_count(0) == 1.0 and distributed_count(4) == 4.0
