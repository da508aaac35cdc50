"""The CUDA backend: gsplat's rasteriser behind the project's conventions.

gsplat (https://github.com/nerfstudio-project/gsplat, 1.5) is imported only when it renders
(it needs CUDA); on a CPU this module loads but never touches it. Two entry points use it:

- :func:`render_gsplat`: ``render(backend="gsplat")`` — one picture, any number of channels.
- :func:`training_rasterizer`: what the training recipes call on CUDA. It hands back gsplat's
  ``rasterization`` (N-channel colours, channel chunking), and the recipes composite masks,
  features and RGB of a whole view with it in the same loss code as the CPU weights path.

:func:`liftgs.render.backends.gsplat_reference.reference_rasterization` is our renderer behind
``gsplat.rasterization``'s exact signature and return layout. The CPU test suite substitutes it for gsplat to exercise every
line of the CUDA glue (values and gradients equal to the weights path); users can call it to
check a gsplat result against the CPU renderer.

Differences gsplat keeps to itself: it clamps alpha at 0.999 (this renderer: 0.99, as 3DGS),
and its screen extents are whole pixels (ours exact); both change values only for nearly
opaque or sub-pixel Gaussians.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor

from liftgs.render.composite import RenderInfo
from liftgs.render.projection import EPS_2D, NEAR_PLANE, float32

Rasterize = Callable[..., tuple[Tensor, Tensor, dict]]
"""A function with ``gsplat.rasterization``'s signature: (render_colors [C, H, W, D],
render_alphas [C, H, W, 1], meta)."""


def gsplat_available() -> bool:
    """True when CUDA is usable and gsplat is installed (checked without importing it)."""
    return torch.cuda.is_available() and importlib.util.find_spec("gsplat") is not None


def load_rasterization() -> Rasterize:
    """``gsplat.rasterization`` (imports gsplat; call only when :func:`gsplat_available`)."""
    from gsplat import rasterization  # noqa: PLC0415  (optional dependency: liftgs[cuda])

    return rasterization


def training_rasterizer(device: torch.device | str) -> Rasterize | None:
    """The rasteriser the training recipes use on ``device``: gsplat's on CUDA when it is
    installed, else None (the recipes then render through :func:`liftgs.render.render_weights`,
    numba on CPU, the torch blocks on CUDA without gsplat)."""
    if torch.device(device).type != "cuda" or not gsplat_available():
        return None
    return load_rasterization()


def rasterize_view(rasterize: Rasterize, means: Tensor, quats: Tensor, scales: Tensor,
                   opacities: Tensor, attributes: Tensor, viewmat: Tensor, K: Tensor, width: int,
                   height: int, background: Tensor | None = None, eps2d: float = EPS_2D,
                   channel_chunk: int = 32) -> tuple[Tensor, Tensor]:
    """One view's ``attributes`` [N, C] composited over the whole image by ``rasterize``:
    (values [H * W, C] in flat pixel order y * W + x, alpha [H * W]).

    The project's conventions passed explicitly (near plane 0.01, ``eps2d``, classic
    rasterisation, post-activation values: ``sh_degree=None``); gsplat chunks the channels
    ``channel_chunk`` at a time and pads counts its kernels lack."""
    C = attributes.shape[1]
    means, quats, scales, opacities, attributes = float32(means, quats, scales, opacities, attributes)
    bg = None if background is None else background.to(attributes).reshape(1, C)
    with torch.autocast(means.device.type, enabled=False):  # gsplat's kernels are float32
        colors, alphas, _ = rasterize(
            means, quats, scales, opacities, attributes, viewmat[None].to(means), K[None].to(means),
            int(width), int(height), near_plane=NEAR_PLANE, eps2d=eps2d, sh_degree=None,
            backgrounds=bg, render_mode="RGB", rasterize_mode="classic", channel_chunk=channel_chunk)
    return colors.reshape(int(height) * int(width), C), alphas.reshape(-1)


def render_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                  attributes: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                  background: Tensor | None = None, rasterize: Rasterize | None = None):
    """gsplat's CUDA rasteriser with the same conventions; returns (image, alpha, info).
    ``rasterize`` replaces gsplat's entry point (tests pass ``reference_rasterization``)."""
    if rasterize is None:
        if not means.is_cuda:
            raise RuntimeError("render(backend='gsplat') needs CUDA tensors; use backend='torch' "
                               "on CPU")
        rasterize = load_rasterization()
    values, alpha = rasterize_view(rasterize, means, quats, scales, opacities, attributes, viewmat,
                                   K, width, height, background)
    H, W = int(height), int(width)
    return values.reshape(H, W, -1), alpha.reshape(H, W), RenderInfo(None, None, "gsplat")
