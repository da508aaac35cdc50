"""The generic training loop on a toy model (MLP with dropout): no model / render code.

``test_train_loop`` checks checkpoints and exact resume with it; the two DDP checks run
inside the 2-process group of the recipe's DDP test (``test_pretrain::test_ddp_two_processes``)
to pay the spawn cost once: ``ddp_toy_check`` in each worker, ``check_toy_ddp_result`` in the
parent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liftgs.train import checkpoint as ckpt
from liftgs.train.distributed import DistInfo
from liftgs.train.logging import read_jsonl
from liftgs.train.loop import LoopConfig, run_training, seed_everything
from liftgs.train.optim import OptimConfig
from liftgs.train.sampler import EpochSampler, sample_rng

NUM_ITEMS = 37


def toy_model(dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def toy_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_ITEMS, 4, generator=g)
    return x, (x @ torch.tensor([1.0, -2.0, 0.5, 3.0])).unsqueeze(1)


def toy_step_fn(seed: int):
    x, y = toy_data()
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


def run_toy(run_dir: Path, steps: int, seed: int = 3, resume=False, hook=None, batch: int = 4,
            dropout: float = 0.2, info: DistInfo | None = None) -> nn.Module:
    """Train the toy model (checkpoint every 3 steps, keep 2, log every step); returns it."""
    seed_everything(seed, info.rank if info else 0)
    model = toy_model(dropout)
    loop = LoopConfig(steps=steps, batch_size=batch, seed=seed, log_every=1, ckpt_every=3, keep_last=2,
                      tensorboard=False, progress=False)
    optim = OptimConfig(lr=1e-2, warmup_steps=2, schedule="cosine", grad_clip=1.0)
    run_training(model, toy_step_fn(seed), loop, optim, run_dir, config={"seed": seed},
                 resume=resume, on_step_end=hook, info=info)
    return model


def ddp_toy_check(info: DistInfo, out_dir: Path) -> None:
    """In each rank: 4 steps of the toy loop with batch 2 per rank; save the weights."""
    model = run_toy(out_dir / "toy", steps=4, batch=2, dropout=0.0, info=info)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out_dir / f"toy_rank{info.rank}.safetensors"))


def check_toy_ddp_result(out_dir: Path) -> None:
    """Ranks agree bitwise, and match one process with the union batch (4) within tolerance."""
    r0 = load_file(str(out_dir / "toy_rank0.safetensors"))
    r1 = load_file(str(out_dir / "toy_rank1.safetensors"))
    single = run_toy(out_dir / "toy_single", steps=4, batch=4, dropout=0.0).state_dict()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs across ranks"
        torch.testing.assert_close(r0[k], single[k], rtol=1e-5, atol=1e-6)
    # rank 0 alone wrote the log and the checkpoints, with both ranks' RNG states
    latest = ckpt.latest_checkpoint(out_dir / "toy")
    assert (latest / "rng_rank1.safetensors").is_file()
    assert len(read_jsonl(out_dir / "toy")) == 4


class Killed(Exception):
    """Raised by :func:`kill_at` to interrupt a run as a crash would."""


def kill_at(step_to_die: int):
    """An ``on_step_end`` hook that interrupts the run after step ``step_to_die``."""
    def hook(step, scalars):
        if step == step_to_die:
            raise Killed()
    return hook
