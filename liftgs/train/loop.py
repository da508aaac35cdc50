"""The generic training loop both recipes (pretrain, finetune) drive.

A recipe supplies a model and a ``step_fn(model, positions, step) -> (loss, scalars)`` that
builds this rank's samples for the given stream positions (a pure function of the seed and
the position, see ``sampler.py``), runs forward and the losses, and returns the loss to
back-propagate. The loop owns everything else: seeding, AdamW + schedule, gradient clipping,
DDP wrapping, logging on rank 0, periodic atomic checkpoints and exact resume.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from liftgs.train import checkpoint as ckpt
from liftgs.train.distributed import DistInfo, barrier, current_info, reduce_scalars, shard_positions, wrap_ddp
from liftgs.train.logging import TrainLogger
from liftgs.train.optim import OptimConfig, build_optimizer

StepFn = Callable[[nn.Module, list[int], int], tuple[Tensor, dict[str, float]]]


class SplitStep:
    """A step function in two halves: ``load(positions)`` builds the step's data on the CPU (a
    pure function of the positions; picklable), ``compute(model, data, step)`` runs the model
    and the losses. Called as one, it is an ordinary ``step_fn``; with ``--num-workers`` the
    loop runs ``load`` ahead in DataLoader worker processes."""

    def __init__(self, load: Callable[[list[int]], Any], compute: Callable[[nn.Module, Any, int], Any]):
        self.load, self.compute = load, compute

    def __call__(self, model: nn.Module, positions: list[int], step: int):
        return self.compute(model, self.load(positions), step)


class _StepData(torch.utils.data.Dataset):
    """Item i = the data of step ``start + i`` for this rank (``SplitStep.load``)."""

    def __init__(self, load, start: int, steps: int, batch_size: int, rank: int, world_size: int):
        self.load, self.start, self.steps = load, start, steps
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int):
        return self.load(shard_positions(self.start + i, self.batch_size, self.rank, self.world_size))


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # a loader process: one thread each, the trainer keeps the cores


def _prefetched(step_fn, loop: LoopConfig, start_step: int, info: DistInfo):
    """An iterator over the steps' data loaded by ``loop.num_workers`` processes, or None."""
    if not loop.num_workers or not isinstance(step_fn, SplitStep) or start_step >= loop.steps:
        return None
    data = _StepData(step_fn.load, start_step, loop.steps, loop.batch_size, info.rank, info.world_size)
    return iter(torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=loop.num_workers, worker_init_fn=_worker_init,
        pin_memory=info.device.type == "cuda", prefetch_factor=2))
Hook = Callable[[int, dict[str, float]], None]
ImagesFn = Callable[[nn.Module, int], dict[str, np.ndarray]]


@dataclass
class LoopConfig:
    """Length, batch, seed and bookkeeping of a run: what :func:`run_training` reads.

    The defaults are the recipes' (the ``liftgs pretrain`` / ``finetune`` flags of these names).
    """

    steps: int = 2000
    """total optimiser steps of the run (a resumed run continues to this number)"""
    batch_size: int = 2
    """samples (scenes) per process per step; the global batch is batch_size * processes"""
    seed: int = 0
    log_every: int = 10
    """log the scalars every this many steps (and after the last step)"""
    ckpt_every: int = 200
    """write a checkpoint every this many steps (and always after the last step)"""
    keep_last: int = 3
    """keep only the newest K checkpoints (0 keeps all)"""
    tensorboard: bool = True
    progress: bool = True
    """show a tqdm progress bar with the live loss"""
    image_every: int = 0
    """write pictures to TensorBoard (and wandb) every this many steps, 0 = never: pre-training
    draws its probe view's pseudo-labels next to the rendered masks, the frame next to the
    rendered colours"""
    wandb_project: str | None = None
    """also log to this Weights & Biases project (needs ``pip install wandb``); None = off"""
    wandb_mode: Literal["online", "offline"] = "online"
    """offline: wandb writes under the run folder only (``wandb sync`` uploads it later)"""
    num_workers: int = 0
    """processes that load the next steps' scenes and views while the model trains (a torch
    DataLoader over step positions; samples are pure functions of the position, so the result
    is the same with any number); 0 = load in the training process"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: forward and losses under ``torch.autocast`` in bfloat16 (weights, gradients and the
    optimiser stay float32; rendering always runs in float32); fp32: everything in float32"""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.image_every < 0:
            raise ValueError(f"image_every must be >= 0 (0 = no pictures), got {self.image_every}")
        if self.wandb_mode not in ("online", "offline"):
            raise ValueError(f"wandb_mode must be 'online' or 'offline', got {self.wandb_mode!r}")
        if self.wandb_project is not None:
            from liftgs.train.logging import check_wandb

            check_wandb()
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.keep_last < 0:
            raise ValueError(f"keep_last must be >= 0 (0 keeps every checkpoint), got {self.keep_last}")


@dataclass
class RunConfig(LoopConfig):
    """Fields every recipe shares: the loop's (:class:`LoopConfig`), resume, device, optimiser.

    ``PretrainConfig`` and ``FinetuneConfig`` extend it with their data and loss settings.
    """

    draws_pictures: ClassVar[bool] = False  # the recipe has pictures for --image-every

    resume: bool = False
    """continue from the latest checkpoint in --out (bitwise the same result as no interruption)"""
    device: str = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        super().__post_init__()
        check_device(self.device)
        if self.image_every and not self.draws_pictures:
            raise ValueError("--image-every: this recipe draws no pictures (pre-training does); leave it at 0")

    def loop_config(self) -> LoopConfig:
        """The loop's fields alone, for :func:`run_training`."""
        return LoopConfig(**{f.name: getattr(self, f.name) for f in fields(LoopConfig)})


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    start_step: int
    last_scalars: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False)  # the trained (unwrapped) model


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch; ranks get different streams (dropout differs per rank).

    This replaces the process's global RNG states: the recipes call it only inside
    ``liftgs.runtime.fork_rng``, which hands their callers' states back afterwards.
    """
    s = int(seed) * 1000 + int(rank)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


def run_training(model: nn.Module, step_fn: StepFn, loop: LoopConfig, optim: OptimConfig,
                 run_dir: str | Path, config: dict[str, Any] | None = None,
                 resume: bool | str | Path = False, info: DistInfo | None = None,
                 on_step_end: Hook | None = None, desc: str = "train",
                 find_unused_parameters: bool = True, images_fn: ImagesFn | None = None) -> TrainResult:
    """Train ``model`` for ``loop.steps`` steps; see the module docstring.

    ``resume``: False (fresh run; refuses a run dir that already has checkpoints), True (the
    newest intact checkpoint of ``run_dir``, a damaged newer one reported and skipped; fresh
    when there is none) or a checkpoint path.
    ``on_step_end(step, scalars)`` runs after every step (tests use it to simulate a kill).
    ``images_fn(model, step) -> {tag: uint8 [H, W, 3]}`` draws pictures every
    ``loop.image_every`` steps on the main process, in eval mode without gradients and on
    forked RNGs (so the run's numbers do not depend on whether pictures are drawn).
    Call ``seed_everything`` before building the model so every rank starts identical.
    """
    info = info or current_info()
    run_dir = Path(run_dir)
    optimizer, scheduler = build_optimizer(model, optim, loop.steps)
    start_step = _maybe_resume(model, optimizer, scheduler, run_dir, resume, info, config)
    train_model = wrap_ddp(model, info, find_unused_parameters=find_unused_parameters)
    logger = TrainLogger(run_dir, loop.steps, start_step, enabled=info.is_main,
                         tensorboard=loop.tensorboard, desc=desc, show_progress=loop.progress,
                         wandb_project=loop.wandb_project, wandb_mode=loop.wandb_mode, config=config)
    result = TrainResult(run_dir=run_dir, step=start_step, start_step=start_step, model=model)
    loaded = _prefetched(step_fn, loop, start_step, info)
    try:
        for step in range(start_step, loop.steps):
            data = next(loaded) if loaded is not None else None
            scalars = _one_step(train_model, model, step_fn, optimizer, scheduler, loop, optim,
                                step, info, data)
            done = step + 1
            result.step, result.last_scalars = done, scalars
            if done % loop.log_every == 0 or done == loop.steps:
                logger.log(done, reduce_scalars(scalars))
            if images_fn is not None and loop.image_every and done % loop.image_every == 0 and info.is_main:
                logger.log_images(done, _draw(images_fn, model, done))
            logger.advance()
            if done % loop.ckpt_every == 0 or done == loop.steps:
                result.checkpoint = ckpt.save_checkpoint(
                    run_dir, done, model, optimizer, scheduler, config=config,
                    meta={"loss": scalars.get("loss")}, keep_last=loop.keep_last,
                    rank=info.rank, world_size=info.world_size,
                    barrier=barrier if info.enabled else None)
            if on_step_end is not None:
                on_step_end(done, scalars)
    finally:
        del loaded  # stops the loader processes
        logger.close()
    return result


def _draw(images_fn: ImagesFn, model: nn.Module, step: int) -> dict[str, np.ndarray]:
    from liftgs.runtime import fork_rng

    was_training = model.training
    try:
        with fork_rng(), torch.no_grad():
            model.eval()
            return images_fn(model, step)
    finally:
        model.train(was_training)


@torch.no_grad()
def probe_loss(model: nn.Module, step_fn: StepFn, positions: list[int]) -> dict[str, float]:
    """Mean loss terms of the samples at fixed stream ``positions`` (a probe set).

    Per-step training losses are noisy (each step sees other scenes and views); a fixed probe
    set gives a clean before/after comparison. It runs on a copy of the model in train mode
    (batch-norm batch statistics, as the optimiser sees it), so the caller's model — running
    statistics included — is untouched.
    """
    import copy

    probe = copy.deepcopy(model).train()
    totals: dict[str, float] = {}
    for p in positions:
        loss, scalars = step_fn(probe, [p], 0)
        for k, v in {**scalars, "loss": float(loss)}.items():
            totals[k] = totals.get(k, 0.0) + float(v) / len(positions)
    return totals


def _one_step(train_model: nn.Module, model: nn.Module, step_fn: StepFn,
              optimizer: torch.optim.Optimizer, scheduler: Any, loop: LoopConfig,
              optim: OptimConfig, step: int, info: DistInfo, data: Any = None) -> dict[str, float]:
    t0 = time.perf_counter()
    positions = shard_positions(step, loop.batch_size, info.rank, info.world_size)
    train_model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=loop.precision == "bf16"):
        if data is not None:  # loaded ahead by a worker process
            loss, scalars = step_fn.compute(train_model, data, step)
        else:
            loss, scalars = step_fn(train_model, positions, step)
    loss = loss.float()
    if not torch.isfinite(loss.detach()).all():
        raise FloatingPointError(
            f"step {step + 1}: the loss is {loss.item()} ({scalars}); lower --optim.lr or "
            "enable --optim.grad-clip, and check the data for empty or degenerate samples")
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if optim.grad_clip > 0 and params:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, optim.grad_clip))
    else:
        grad_norm = float(torch.linalg.vector_norm(
            torch.stack([p.grad.detach().norm() for p in params]))) if params else 0.0
    optimizer.step()
    lr = float(optimizer.param_groups[0]["lr"])
    scheduler.step()
    out = {k: float(v) for k, v in scalars.items()}
    out.update(loss=float(loss.detach()), grad_norm=grad_norm, lr=lr,
               step_time=time.perf_counter() - t0)
    return out


def _maybe_resume(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                  run_dir: Path, resume: bool | str | Path, info: DistInfo,
                  config: dict[str, Any] | None = None) -> int:
    if resume is False or resume is None:
        existing = ckpt.latest_checkpoint(run_dir)
        if existing is not None:
            raise ckpt.CheckpointError(
                f"{run_dir} already holds checkpoints (latest {existing.name}); pass --resume to "
                "continue that run or choose a new --out directory")
        return 0
    if resume is True and ckpt.latest_checkpoint(run_dir) is None:
        return 0
    # a damaged newest checkpoint of the run is skipped for the newest intact one, said in one line
    say = (lambda msg: print(f"resume: {msg}")) if info.is_main else (lambda msg: None)
    state = ckpt.load_checkpoint(run_dir if resume is True else resume, model, optimizer, scheduler,
                                 rank=info.rank, warn=say)
    changed = _config_changes(state.config, config or {})
    if changed and info.is_main:
        print(f"resume: settings differ from the checkpoint's ({', '.join(changed[:8])}); the "
              "result will not match an uninterrupted run")
    return state.step


_BOOKKEEPING = {"steps", "resume", "progress", "tensorboard", "log_every", "ckpt_every", "keep_last",
                "out", "device", "image_every", "wandb_project", "wandb_mode", "num_workers"}


def _config_changes(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of settings that differ (bookkeeping fields such as ``steps`` ignored)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            if key in _BOOKKEEPING:
                continue
            out += _config_changes(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [prefix.rstrip(".")]
