"""Random Gaussian scenes for the renderer tests (fast backends against the dense reference)."""

from __future__ import annotations

import torch

GEOM = ("means", "quats", "scales", "opacities")
ALL = GEOM + ("attributes", "background")  # every differentiable input of a render


def random_scene(n: int, width: int, height: int, seed: int = 0, dtype=torch.float64,
                 channels: int = 4) -> dict:
    """Gaussians in front of an identity camera, some off-image, some close, some far."""
    g = torch.Generator().manual_seed(seed)
    z = 1.0 + 4.0 * torch.rand(n, generator=g, dtype=dtype)
    xy = (torch.rand(n, 2, generator=g, dtype=dtype) * 2.4 - 1.2) * z[:, None] * 0.6
    f = 0.9 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)
    return {
        "means": torch.cat([xy, z[:, None]], 1),
        "quats": torch.randn(n, 4, generator=g, dtype=dtype),
        "scales": 0.02 + 0.15 * torch.rand(n, 3, generator=g, dtype=dtype),
        "opacities": 0.05 + 0.9 * torch.rand(n, generator=g, dtype=dtype),
        "attributes": torch.rand(n, channels, generator=g, dtype=dtype),
        "viewmat": torch.eye(4, dtype=dtype), "K": K, "width": width, "height": height,
        "background": torch.rand(channels, generator=g, dtype=dtype),
    }
