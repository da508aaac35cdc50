"""Training infrastructure: checkpoints, exact resume, DDP, sampler, schedule, logs.

Uses a toy model (MLP with dropout) so these tests need none of the model / render code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liftgs.train import checkpoint as ckpt
from liftgs.train.distributed import DistInfo, shard_positions
from liftgs.train.logging import read_jsonl
from liftgs.train.loop import LoopConfig, run_training, seed_everything
from liftgs.train.optim import OptimConfig, lr_factor
from liftgs.train.sampler import EpochSampler, sample_rng, subsample_indices

NUM_ITEMS = 37


def _toy_model(dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def _toy_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_ITEMS, 4, generator=g)
    return x, (x @ torch.tensor([1.0, -2.0, 0.5, 3.0])).unsqueeze(1)


def _toy_step_fn(seed: int):
    x, y = _toy_data()
    sampler = EpochSampler(NUM_ITEMS, seed)

    def step_fn(model, positions, step):
        idx = [sampler.item(p) for p in positions]
        # per-sample noise from the (seed, position) generator: data is a pure function of it
        noise = torch.tensor(np.stack([sample_rng(seed, p).normal(0, 0.01, 4) for p in positions]),
                             dtype=torch.float32)
        pred = model(x[idx] + noise)
        loss = ((pred - y[idx]) ** 2).mean()
        return loss, {"mse": float(loss.detach())}

    return step_fn


def _run(run_dir: Path, steps: int, seed: int = 3, resume=False, hook=None, batch: int = 4,
         dropout: float = 0.2, info: DistInfo | None = None) -> nn.Module:
    seed_everything(seed, info.rank if info else 0)
    model = _toy_model(dropout)
    loop = LoopConfig(steps=steps, batch_size=batch, seed=seed, ckpt_every=3, keep_last=2,
                      tensorboard=False, progress=False)
    optim = OptimConfig(lr=1e-2, warmup_steps=2, schedule="cosine", grad_clip=1.0)
    run_training(model, _toy_step_fn(seed), loop, optim, run_dir, config={"seed": seed},
                 resume=resume, on_step_end=hook, info=info)
    return model


class _Killed(Exception):
    pass


def _kill_at(step_to_die: int):
    def hook(step, scalars):
        if step == step_to_die:
            raise _Killed()
    return hook


def test_exact_resume_is_bitwise(tmp_path):
    full = _run(tmp_path / "full", steps=10)
    with pytest.raises(_Killed):
        _run(tmp_path / "cut", steps=10, hook=_kill_at(5))  # last checkpoint: step 3
    assert ckpt.latest_checkpoint(tmp_path / "cut").name == "step_00000003"
    resumed = _run(tmp_path / "cut", steps=10, resume=True)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"weight {k} differs after resume"
    # the JSONL log of the resumed run reads like the uninterrupted one
    log_full = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "full")]
    log_cut = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "cut")]
    assert log_full == log_cut and len(log_full) == 10


def test_checkpoint_atomic_no_pickle_and_keep_last(tmp_path):
    _run(tmp_path, steps=10)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_00000009", "step_00000010"]  # keep_last=2
    latest = ckpt.latest_checkpoint(tmp_path)
    files = sorted(p.name for p in latest.rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    assert {"trainer.json", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_rank0.safetensors", "rng_rank0.json"} <= set(files)
    # loads with safetensors / json only, into a fresh model and optimiser
    model = _toy_model()
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
        ckpt.load_checkpoint(tmp_path / "nope", _toy_model())
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint"):
        ckpt.load_checkpoint(tmp_path, _toy_model())
    _run(tmp_path / "run", steps=3)
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError, match="do not match the model"):
        ckpt.load_checkpoint(latest, nn.Linear(4, 1))
    (latest / "scheduler.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.load_checkpoint(latest, _toy_model(), scheduler=torch.optim.lr_scheduler.LambdaLR(
            torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), lambda s: 1.0))
    with pytest.raises(ckpt.CheckpointError, match="pass --resume"):
        _run(tmp_path / "run", steps=3)  # fresh run into a dir with checkpoints


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


# ------------------------------------------------------------------------------ DDP
# The 2-process DDP tests share one process group with the real-recipe DDP test
# (tests/test_pretrain.py::test_ddp_two_processes), to pay the spawn cost once:
# ``ddp_toy_check`` runs inside those workers and ``check_toy_ddp_result`` in the parent.


def ddp_toy_check(info: DistInfo, out_dir: Path) -> None:
    """In each rank: 4 steps of the toy loop with batch 2 per rank; save the weights."""
    model = _run(out_dir / "toy", steps=4, batch=2, dropout=0.0, info=info)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out_dir / f"toy_rank{info.rank}.safetensors"))


def check_toy_ddp_result(out_dir: Path) -> None:
    """Ranks agree bitwise, and match one process with the union batch (4) within tolerance."""
    r0 = load_file(str(out_dir / "toy_rank0.safetensors"))
    r1 = load_file(str(out_dir / "toy_rank1.safetensors"))
    single = _run(out_dir / "toy_single", steps=4, batch=4, dropout=0.0).state_dict()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs across ranks"
        torch.testing.assert_close(r0[k], single[k], rtol=1e-5, atol=1e-6)
    # rank 0 alone wrote the log and the checkpoints, with both ranks' RNG states
    latest = ckpt.latest_checkpoint(out_dir / "toy")
    assert (latest / "rng_rank1.safetensors").is_file()
    assert len(read_jsonl(out_dir / "toy")) == 4


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
