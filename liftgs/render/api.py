"""Public entry points: ``render_weights`` (geometry -> sparse W), ``render`` (one call)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.render.composite import RenderWeights, composite
from liftgs.render.projection import Projection, project_gaussians
from liftgs.render.rasterize import block_weights
from liftgs.render.reference import dense_weights

BACKENDS = ("auto", "torch", "reference", "gsplat")


@dataclass
class RenderInfo:
    """What ``render`` computed besides the image: the reusable weights and the projection."""

    weights: RenderWeights | None
    projection: Projection | None
    backend: str


def _check_inputs(means, quats, scales, opacities, viewmat, K, width, height) -> None:
    N = means.shape[0] if means.ndim == 2 else -1
    shapes = {"means": (means, (N, 3)), "quats": (quats, (N, 4)), "scales": (scales, (N, 3)),
              "opacities": (opacities, (N,)), "viewmat": (viewmat, (4, 4)), "K": (K, (3, 3))}
    for name, (t, shape) in shapes.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"render: {name} must have shape {list(shape)} (N = number of "
                             f"Gaussians from means [N, 3]), got {list(t.shape)}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"render: width and height must be positive, got {width}x{height}")


def render_weights(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, any norm
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] in (0, 1)
    viewmat: Tensor,  # [4, 4] world -> camera
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    pixels: Tensor | None = None,  # [P] long flat pixel ids y * W + x; None = all
    backend: str = "auto",
) -> RenderWeights:
    """Sparse pixel x Gaussian weights of one view, differentiable w.r.t. the geometry.

    ``backend``: "torch" (vectorised tile rasteriser, default) or "reference" (dense).
    """
    _check_inputs(means, quats, scales, opacities, viewmat, K, width, height)
    width, height = int(width), int(height)
    if pixels is None:
        pixels = torch.arange(width * height, device=means.device)
    pixels = pixels.to(device=means.device, dtype=torch.long).reshape(-1)
    if pixels.numel() and (pixels.min() < 0 or pixels.max() >= width * height):
        raise ValueError(f"render_weights: pixels must lie in [0, {width * height}) for a "
                         f"{width}x{height} image")
    proj = project_gaussians(means, quats, scales, opacities, viewmat, K, width, height)
    if backend in ("auto", "torch", "gsplat"):
        layout, values, T = block_weights(proj, opacities, pixels, width, height)
    elif backend == "reference":
        values, T = dense_weights(proj, opacities, pixels, width)
        layout = None
    else:
        raise ValueError(f"render_weights: backend must be one of {BACKENDS}, got {backend!r}")
    return RenderWeights(pixels=pixels, values=values, transmittance=T, width=width,
                         height=height, num_gaussians=means.shape[0], layout=layout,
                         projection=proj)


def render(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    attributes: Tensor,  # [N, C]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    background: Tensor | None = None,  # [C]
    backend: str = "auto",
) -> tuple[Tensor, Tensor, RenderInfo]:
    """Render any number of channels: (image [H, W, C], alpha [H, W], info).

    "auto" uses gsplat when the inputs are on CUDA and gsplat imports; on CPU it never
    touches gsplat. ``info.weights`` can composite further attribute stacks of this view.
    """
    if backend not in BACKENDS:
        raise ValueError(f"render: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda):
        from liftgs.render.gsplat_backend import gsplat_available, render_gsplat

        if backend == "gsplat" or gsplat_available():
            return render_gsplat(means, quats, scales, opacities, attributes, viewmat, K,
                                 width, height, background)
    W = render_weights(means, quats, scales, opacities, viewmat, K, width, height,
                       backend="reference" if backend == "reference" else "torch")
    values, alpha = composite(W, attributes, background)
    image = values.reshape(int(height), int(width), -1)
    return image, alpha.reshape(int(height), int(width)), RenderInfo(W, W.projection, backend)
