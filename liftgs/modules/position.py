"""Fourier features of 3D positions, for attention keys and per-point features."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FourierPosition(nn.Module):
    """Scene-centred xyz [V, 3] -> sin / cos at wavelengths 0.25-8 m (:meth:`encode`), then the
    linear map ``proj`` to [V, D] (``forward`` applies both).

    LIFT-GS applies ``proj`` folded into its mask embeddings
    (:meth:`liftgs.models.liftgs.LiftGS.fold_mask_embeddings`): instance masks are above all
    spatially compact, and with the position in the per-voxel mask features a proposal's mask
    embedding can pick a region directly, before the UNet has learnt instance-discriminative
    appearance features. GenSplat's instance decoder uses it as the positional encoding of
    its tokens and queries."""

    def __init__(self, dim: int, num_bands: int = 6, min_wavelength: float = 0.25):
        super().__init__()
        freqs = 2 * torch.pi / (min_wavelength * 2.0 ** torch.arange(num_bands, dtype=torch.float32))
        self.register_buffer("freqs", freqs, persistent=False)
        self.proj = nn.Linear(6 * num_bands, dim)

    def encode(self, xyz: Tensor) -> Tensor:
        """The Fourier features [V, 6 * bands] before the linear map."""
        angles = (xyz[:, :, None] * self.freqs.to(xyz.dtype)).flatten(1)  # [V, 3 * bands]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, xyz: Tensor) -> Tensor:
        """``proj(encode(xyz))`` [V, D]."""
        return self.proj(self.encode(xyz))
