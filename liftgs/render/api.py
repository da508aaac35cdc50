"""Public entry points: ``render_weights`` (geometry -> sparse W), ``render`` (one call)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from liftgs.render.backends import gsplat as gsplat_backend
from liftgs.render.backends.gsplat import Rasterize, gsplat_available, rasterize_view, render_gsplat
from liftgs.render.backends.numba.csr import csr_weights, numba_available
from liftgs.render.backends.reference import dense_weights
from liftgs.render.backends.torch import block_weights
from liftgs.render.composite import RenderInfo, RenderWeights, composite
from liftgs.render.projection import EPS_2D, float32, project_gaussians

BACKENDS = ("auto", "numba", "torch", "reference", "gsplat")
NUMBA_DTYPES = (torch.float32, torch.float64)


def _cpu_backend(backend: str, means: Tensor) -> str:
    """The weights backend for a request: "auto" -> numba on CPU when importable, else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"render: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba":
        if means.is_cuda or means.dtype not in NUMBA_DTYPES:
            raise ValueError("backend='numba' needs float32/float64 CPU tensors; use 'torch'")
        if not numba_available():
            raise RuntimeError("backend='numba' needs the numba package: pip install numba")
    if backend == "auto":
        ok = not means.is_cuda and means.dtype in NUMBA_DTYPES and numba_available()
        return "numba" if ok else "torch"
    return "torch" if backend == "gsplat" else backend


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
    eps2d: float = EPS_2D,  # px^2 low-pass added to every 2D covariance (3DGS / gsplat: 0.3)
) -> RenderWeights:
    """Sparse pixel x Gaussian weights of one view, differentiable w.r.t. the geometry.

    ``backend``: "auto" (= "numba" on CPU when numba imports, else "torch"), "numba"
    (compiled pair-list kernels), "torch" (vectorised dense blocks) or "reference" (dense).
    ``eps2d``: the screen-space low-pass (px², 3DGS's 0.3 by default); a smaller one lets
    Gaussians draw sharper edges at low resolution (``liftgs recon`` fits with 0.1).
    """
    _check_inputs(means, quats, scales, opacities, viewmat, K, width, height)
    means, quats, scales, opacities = float32(means, quats, scales, opacities)
    with torch.autocast(means.device.type, enabled=False):  # float32 even under mixed precision
        return _render_weights(means, quats, scales, opacities, viewmat, K, width, height, pixels,
                               backend, eps2d)


def _render_weights(means, quats, scales, opacities, viewmat, K, width, height, pixels, backend,
                    eps2d) -> RenderWeights:
    backend = _cpu_backend(backend, means)
    width, height = int(width), int(height)
    if pixels is None:
        pixels = torch.arange(width * height, device=means.device)
    pixels = pixels.to(device=means.device, dtype=torch.long).reshape(-1)
    if pixels.numel() and (pixels.min() < 0 or pixels.max() >= width * height):
        raise ValueError(f"render_weights: pixels must lie in [0, {width * height}) for a "
                         f"{width}x{height} image")
    proj = project_gaussians(means, quats, scales, opacities, viewmat, K, width, height, eps2d=eps2d)
    if backend == "numba":
        layout, values, T = csr_weights(proj, opacities, pixels, width, height)
    elif backend == "torch":
        layout, values, T = block_weights(proj, opacities, pixels, width, height)
    else:
        values, T = dense_weights(proj, opacities, pixels, width)
        layout = None
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
        if backend == "gsplat" or gsplat_available():
            return render_gsplat(means, quats, scales, opacities, attributes, viewmat, K,
                                 width, height, background)
    backend = _cpu_backend(backend, means)
    W = render_weights(means, quats, scales, opacities, viewmat, K, width, height,
                       backend=backend)
    values, alpha = composite(W, attributes, background)
    image = values.reshape(int(height), int(width), -1)
    return image, alpha.reshape(int(height), int(width)), RenderInfo(W, W.projection, backend)


def resolve_rasterizer(rasterize: Rasterize | str | None, device: torch.device) -> Rasterize | None:
    """``"auto"`` -> gsplat's ``rasterization`` on CUDA when installed, else None (the weights
    path); None -> the weights path; a function with gsplat's signature -> that function."""
    if isinstance(rasterize, str):
        if rasterize != "auto":
            raise ValueError(f"rasterize must be 'auto', None or a function, got {rasterize!r}")
        return gsplat_backend.training_rasterizer(device)
    return rasterize


def composite_view(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    rows: Callable[[Tensor | None], Tensor],  # Gaussian ids [G] (None = all N) -> attributes [G, C]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    pixels: Tensor | None = None,  # [P] flat pixel ids; None = the whole image
    rasterize: Rasterize | str | None = "auto",
) -> tuple[Tensor, Tensor]:
    """Per-Gaussian attributes composited at one view's ``pixels``: (values [P, C], alpha [P]),
    black background. What the training recipes render with, on every device.

    Weights path (CPU; CUDA without gsplat): the sampled pixels' weights, then only the rows
    of the Gaussians they see (``rows(used)``). Rasteriser path (``rasterize``: gsplat's
    ``rasterization`` on CUDA by default, or a substitute with its signature): every
    Gaussian's rows (``rows(None)``) over the whole image, then the pixels' values.
    """
    rasterize = resolve_rasterizer(rasterize, means.device)
    if rasterize is not None:
        values, alpha = rasterize_view(rasterize, means, quats, scales, opacities, rows(None),
                                       viewmat, K, width, height)
        if pixels is None:
            return values, alpha
        pixels = pixels.to(device=values.device, dtype=torch.long).reshape(-1)
        return values.index_select(0, pixels), alpha.index_select(0, pixels)
    W = render_weights(means, quats, scales, opacities, viewmat, K, width, height, pixels=pixels)
    used = W.used_gaussians()
    attrs = rows(used)
    if used.numel() == 0:  # nothing in view: every pixel is background (gradient-connected zeros)
        return attrs.new_zeros(W.num_pixels, attrs.shape[1]) + attrs.sum() * 0.0, W.alpha.to(attrs.dtype)
    return composite(W, attrs, gaussians=used)
