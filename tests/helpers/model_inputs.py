"""A small LIFT-GS configuration and random rooms batched the way the model takes them."""

from __future__ import annotations

import torch

from liftgs.models.liftgs import ModelConfig

TEXT_DIM = 16


def small_config(**kw) -> ModelConfig:
    sizes = dict(encoder_channels=(8, 16, 16), encoder_out=16, hidden_dim=32, num_layers=2, num_heads=4,
                 ffn_dim=32, num_queries=6, head_hidden=16, token_stride=2)
    sizes.update(kw)
    return ModelConfig.tiny(text_dim=TEXT_DIM, **sizes)


def room(n: int, seed: int, shift=(0.0, 0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """A floor and a wall (points on surfaces, like a scan)."""
    g = torch.Generator().manual_seed(seed)
    floor = torch.rand(n // 2, 3, generator=g) * torch.tensor([1.2, 1.0, 0.0])
    wall = torch.rand(n - n // 2, 3, generator=g) * torch.tensor([1.2, 0.0, 0.8])
    pts = torch.cat([floor, wall]) + torch.tensor(shift)
    return pts, torch.rand(n, 3, generator=g)


def batch_of(scenes, T: int = 3, seed: int = 0):
    """(points, colors, offsets, queries [B, T, TEXT_DIM], query mask); the last query of the
    last scene is padding."""
    pts = torch.cat([s[0] for s in scenes])
    cols = torch.cat([s[1] for s in scenes])
    offsets = torch.cumsum(torch.tensor([len(s[0]) for s in scenes]), 0)
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(len(scenes), T, TEXT_DIM, generator=g)
    mask = torch.ones(len(scenes), T, dtype=torch.bool)
    mask[-1, -1] = False
    queries[-1, -1] = 0.0
    return pts, cols, offsets, queries, mask
