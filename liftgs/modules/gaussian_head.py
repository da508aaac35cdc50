"""Per-point MLP turning encoder features into 3D Gaussians (paper Sec 3.3.2).

One Gaussian per input point. Outputs are bounded and initialised so that the Gaussians at
step 0 already sit on the points with about a voxel's size, opacity ``opacity_init`` and the
input colour: rendering is meaningful from the first step, and the Gaussians can stay latent
when no photometric loss is used (Table 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftgs.types import Gaussians

_GEOMETRY_OUT = 3 + 3 + 4 + 1 + 3  # offset, log-scale, rotation, opacity, colour


@dataclass
class LowRankGaussians(Gaussians):
    """Gaussians whose features are stored in low-rank form:
    ``features = feature_basis @ feature_weight.T + feature_bias`` (``features`` stays None).

    Compositing is linear, so a renderer can composite the narrow basis [N, H] and map the
    pixels afterwards (exact, and F / H times fewer channels to render); the dense [N, F]
    matrix would cost a large product per training step for nothing."""

    feature_basis: Tensor | None = None  # [N, H]
    feature_weight: Tensor | None = None  # [F, H]
    feature_bias: Tensor | None = None  # [F]

    def feature_vectors(self) -> Tensor | None:
        if self.features is not None:
            return self.features
        if self.feature_basis is None or self.feature_weight is None:
            return None
        out = self.feature_basis @ self.feature_weight.T
        return out + self.feature_bias if self.feature_bias is not None else out

    def point_slice(self, start: int, end: int) -> "LowRankGaussians":
        """The Gaussians of points ``start:end`` (the shared feature map is kept whole)."""
        per_point = ("means", "quats", "scales", "opacities", "colors", "features", "feature_basis")
        return replace(self, **{k: getattr(self, k)[start:end] for k in per_point if getattr(self, k) is not None})


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class GaussianHead(nn.Module):
    """``features`` [N, C] + points + colours -> :class:`Gaussians` with N entries."""

    def __init__(self, in_dim: int, hidden: int, feature_dim: int, voxel_size: float, offset_bound: float = 1.0,
                 scale_init: float = 0.6, scale_max: float = 3.0, opacity_init: float = 0.7):
        super().__init__()
        self.voxel_size = float(voxel_size)
        self.offset_bound = float(offset_bound)
        self.scale_max = float(scale_max)
        # the point's position inside its voxel and its own colour give sub-voxel detail
        self.mlp = nn.Sequential(nn.Linear(in_dim + 6, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.geometry = nn.Linear(hidden, _GEOMETRY_OUT)
        self.features = nn.Linear(hidden, feature_dim)
        nn.init.zeros_(self.geometry.weight)
        bias = torch.zeros(_GEOMETRY_OUT)
        bias[3:6] = _logit(scale_init / scale_max)
        bias[10] = _logit(opacity_init)
        with torch.no_grad():
            self.geometry.bias.copy_(bias)

    def forward(self, features: Tensor, points: Tensor, colors: Tensor) -> Gaussians:
        """``features`` [N, C], ``points`` [N, 3], ``colors`` [N, 3] in [0, 1]."""
        v = self.voxel_size
        local = points / v - torch.floor(points / v) - 0.5  # [N, 3] in [-0.5, 0.5)
        h = self.mlp(torch.cat([features, local, colors - 0.5], dim=1))
        g = self.geometry(h)
        offset, scale, rot, opacity, color = g.split([3, 3, 4, 1, 3], dim=1)
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=g.dtype, device=g.device)
        base_color = torch.logit(colors.clamp(0.01, 0.99))
        return LowRankGaussians(
            means=points + torch.tanh(offset) * (self.offset_bound * v),
            quats=F.normalize(rot + identity, dim=1),
            scales=torch.sigmoid(scale) * (self.scale_max * v),
            opacities=torch.sigmoid(opacity[:, 0]),
            colors=torch.sigmoid(base_color + color),
            # views, not the parameters themselves: DDP (find_unused_parameters) finds used
            # parameters by walking the outputs' autograd graph, where a bare leaf is invisible
            feature_basis=h, feature_weight=self.features.weight.view_as(self.features.weight),
            feature_bias=self.features.bias.view_as(self.features.bias),
        )
