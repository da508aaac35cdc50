"""The CUDA backend: gsplat's rasteriser behind ``render``'s signature and conventions.

gsplat itself is imported only when this backend renders (it needs CUDA); on a CPU the
module loads but never touches gsplat."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from liftgs.render.composite import RenderInfo


def gsplat_available() -> bool:
    """True when CUDA is usable and gsplat is installed (checked without importing it)."""
    return torch.cuda.is_available() and importlib.util.find_spec("gsplat") is not None


def render_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                  attributes: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                  background: Tensor | None = None):
    """gsplat's CUDA rasteriser with the same conventions; returns (image, alpha, info)."""
    if not means.is_cuda:
        raise RuntimeError("render(backend='gsplat') needs CUDA tensors; use backend='torch' "
                           "on CPU")
    from gsplat import rasterization  # noqa: PLC0415  (optional dependency)

    bg = None if background is None else background.to(attributes)[None]
    image, alpha, meta = rasterization(
        means, quats, scales, opacities, attributes, viewmat[None].to(means), K[None].to(means),
        int(width), int(height), near_plane=0.01, eps2d=0.3, packed=False, backgrounds=bg,
    )
    return image[0], alpha[0, ..., 0], RenderInfo(None, None, "gsplat")
