"""Optimiser and learning-rate schedule (paper Sec 4 / appendix A: AdamW, lr 1e-4, wd 1e-4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class OptimConfig:
    """AdamW with optional linear warm-up and cosine decay, plus gradient-norm clipping.

    The defaults are the CPU recipe (``tiny`` presets: a few hundred steps of batch 1, so a
    10x higher peak rate than the paper with warm-up and cosine decay); :func:`paper_optim`
    gives appendix A's numbers (AdamW, lr 1e-4, wd 1e-4)."""

    lr: float = 1e-3
    """peak learning rate (paper: 1e-4 with batch 32 for 76k steps)"""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay (paper: 1e-4)"""
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    """clip the global gradient L2 norm to this value; 0 disables clipping"""
    warmup_steps: int = 30
    """linear warm-up from 0 to ``lr`` over this many steps"""
    schedule: Literal["constant", "cosine"] = "cosine"
    """after warm-up: keep ``lr`` or decay it with a half cosine to ``min_lr_ratio * lr``"""
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")


def paper_optim() -> OptimConfig:
    """Appendix A: AdamW, lr 1e-4, weight decay 1e-4, no schedule given (constant)."""
    return OptimConfig(lr=1e-4, weight_decay=1e-4, warmup_steps=0, schedule="constant")


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(total_steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def build_optimizer(model: nn.Module, config: OptimConfig,
                    total_steps: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW over the trainable parameters and its LambdaLR schedule.

    The schedule is a closure over plain numbers, so its state_dict holds only numbers (the
    checkpoint stores it as JSON) and is rebuilt from the config on resume.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # the fused kernel (CPU and CUDA) is one pass over every tensor, much faster than the
    # per-tensor loop for a model of many small tensors such as the tiny preset
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                  betas=config.betas, fused=fused or None)

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, config)

    return optimizer, LambdaLR(optimizer, lr_lambda=factor)
