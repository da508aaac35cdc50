"""Focal and dice losses on mask probabilities, per pair and as all-pairs cost matrices.

Masks arrive as probabilities because in 2D pre-training they are *rendered*:
``W @ sigmoid(M)`` is a probability but not the sigmoid of any logit we hold (paper Sec 3.2.1).
Probabilities are clamped away from 0 and 1 so the logs stay finite. The all-pairs forms
expand the per-pair sums into matrix products so the matcher costs m x K in one go.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-6


def _clamp(probs: Tensor) -> Tensor:
    return probs.clamp(EPS, 1.0 - EPS)


def focal_loss(probs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Mean focal loss (Lin et al. 2017) over the last axis: probs, targets [K, Q] -> [K]."""
    p = _clamp(probs)
    ce = -(targets * torch.log(p) + (1 - targets) * torch.log1p(-p))
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(-1)


def focal_loss_with_logits(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """As :func:`focal_loss` but from logits (exact log-sigmoid, no clamping): [K, Q] -> [K]."""
    p = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(-1)


def dice_loss(probs: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - soft dice (Sudre et al. 2017) over the last axis: [K, Q] -> [K]."""
    inter = (probs * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (probs.sum(-1) + targets.sum(-1) + smooth)


def pairwise_focal(probs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss of every prediction against every target: probs [m, Q], targets [K, Q] -> [m, K].

    Equals ``focal_loss(probs[i], targets[j])`` for binary targets (the positive and negative
    terms are split and contracted with ``targets`` and ``1 - targets``).
    """
    Q = probs.shape[1]
    p = _clamp(probs)
    pos = -torch.log(p) * (1 - p) ** gamma
    neg = -torch.log1p(-p) * p ** gamma
    if alpha >= 0:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return (pos @ targets.T + neg @ (1 - targets).T) / max(Q, 1)


def pairwise_dice(probs: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Dice loss of every prediction against every target: [m, Q], [K, Q] -> [m, K]."""
    inter = probs @ targets.T
    return 1 - (2 * inter + smooth) / (probs.sum(-1)[:, None] + targets.sum(-1)[None, :] + smooth)
