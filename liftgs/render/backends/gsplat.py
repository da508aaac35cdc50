"""The CUDA backend: gsplat's rasteriser behind the project's conventions.

gsplat (https://github.com/nerfstudio-project/gsplat, 1.5) is imported only when it renders
(it needs CUDA); on a CPU this module loads but never touches it. Two entry points use it:

- :func:`render_gsplat`: ``render(backend="gsplat")`` — one picture, any number of channels.
- :func:`training_rasterizer`: what the training recipes call on CUDA. It hands back gsplat's
  ``rasterization`` (N-channel colours, channel chunking), and the recipes composite masks,
  features and RGB of a whole view with it in the same loss code as the CPU weights path.

:func:`reference_rasterization` is our renderer behind ``gsplat.rasterization``'s exact
signature and return layout. The CPU test suite substitutes it for gsplat to exercise every
line of the CUDA glue (values and gradients equal to the weights path); users can call it to
check a gsplat result against the CPU renderer.

Differences gsplat keeps to itself: it clamps alpha at 0.999 (this renderer: 0.99, as 3DGS),
and its screen extents are whole pixels (ours exact); both change values only for nearly
opaque or sub-pixel Gaussians.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from liftgs.render.composite import RenderInfo
from liftgs.render.projection import EPS_2D, NEAR_PLANE

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
    bg = None if background is None else background.to(attributes).reshape(1, C)
    colors, alphas, _ = rasterize(
        means, quats, scales, opacities, attributes, viewmat[None].to(means), K[None].to(means),
        int(width), int(height), near_plane=NEAR_PLANE, eps2d=eps2d, sh_degree=None,
        backgrounds=bg, render_mode="RGB", rasterize_mode="classic", channel_chunk=channel_chunk)
    return colors.reshape(int(height) * int(width), C), alphas.reshape(-1)


def render_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                  attributes: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                  background: Tensor | None = None, rasterize: Rasterize | None = None):
    """gsplat's CUDA rasteriser with the same conventions; returns (image, alpha, info).
    ``rasterize`` replaces gsplat's entry point (tests pass :func:`reference_rasterization`)."""
    if rasterize is None:
        if not means.is_cuda:
            raise RuntimeError("render(backend='gsplat') needs CUDA tensors; use backend='torch' "
                               "on CPU")
        rasterize = load_rasterization()
    values, alpha = rasterize_view(rasterize, means, quats, scales, opacities, attributes, viewmat,
                                   K, width, height, background)
    H, W = int(height), int(width)
    return values.reshape(H, W, -1), alpha.reshape(H, W), RenderInfo(None, None, "gsplat")


def reference_rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D] or [C, N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,  # [C, D]
    render_mode: str = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: str = "pinhole",
    segmented: bool = False,
    covars: Tensor | None = None,
    with_ut: bool = False,
    with_eval3d: bool = False,
    radial_coeffs: Tensor | None = None,
    tangential_coeffs: Tensor | None = None,
    thin_prism_coeffs: Tensor | None = None,
    ftheta_coeffs: Any = None,
    rolling_shutter: Any = None,  # gsplat's RollingShutterType; GLOBAL (its default) or None
    viewmats_rs: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """``gsplat.rasterization`` (1.5) computed by this project's renderer, on any device.

    Same parameters, same shapes in and out (render_colors [C, H, W, D], render_alphas
    [C, H, W, 1], meta), same channel chunking, differentiable w.r.t. means, quats, scales,
    opacities and colours. Implements what the recipes use: pinhole cameras, classic
    rasterisation, post-activation colours (``sh_degree=None``), ``render_mode="RGB"``,
    no leading batch dimensions; any other option raises ``NotImplementedError`` naming it.
    ``packed``, ``tile_size``, ``sparse_grad`` and ``segmented`` change only how gsplat
    stores its work, never the result, and are accepted as they are.
    """
    from liftgs.render.api import render_weights  # noqa: PLC0415  (api imports this module)
    from liftgs.render.composite import composite  # noqa: PLC0415

    unsupported = {
        "near_plane": near_plane != NEAR_PLANE, "far_plane": far_plane != 1e10,
        "radius_clip": radius_clip != 0.0, "sh_degree": sh_degree is not None,
        "render_mode": render_mode != "RGB", "absgrad": absgrad,
        "rasterize_mode": rasterize_mode != "classic", "distributed": distributed,
        "camera_model": camera_model != "pinhole", "covars": covars is not None,
        "with_ut": with_ut, "with_eval3d": with_eval3d,
        "radial_coeffs": radial_coeffs is not None, "tangential_coeffs": tangential_coeffs is not None,
        "thin_prism_coeffs": thin_prism_coeffs is not None, "ftheta_coeffs": ftheta_coeffs is not None,
        "rolling_shutter": rolling_shutter is not None and getattr(rolling_shutter, "name", "") != "GLOBAL",
        "viewmats_rs": viewmats_rs is not None,
    }
    bad = [name for name, is_set in unsupported.items() if is_set]
    if bad:
        raise NotImplementedError(f"reference_rasterization: {', '.join(bad)} not supported (the "
                                  "recipes use near_plane=0.01, classic, pinhole, RGB, sh_degree=None)")
    if means.ndim != 2 or viewmats.ndim != 3 or Ks.ndim != 3:
        raise NotImplementedError("reference_rasterization: leading batch dimensions are not "
                                  f"supported (means {list(means.shape)}, viewmats {list(viewmats.shape)})")
    cams = viewmats.shape[0]
    per_camera = colors.ndim == 3
    images, alphas = [], []
    for c in range(cams):
        W = render_weights(means, quats, scales, opacities, viewmats[c], Ks[c], width, height,
                           eps2d=eps2d)
        attrs = colors[c] if per_camera else colors
        chunks = []
        for start in range(0, attrs.shape[1], channel_chunk):  # as gsplat: chunk by chunk
            bg = None if backgrounds is None else backgrounds[c, start:start + channel_chunk]
            chunks.append(composite(W, attrs[:, start:start + channel_chunk], bg)[0])
        images.append(torch.cat(chunks, dim=1).reshape(int(height), int(width), -1))
        alphas.append(W.alpha.to(attrs.dtype).reshape(int(height), int(width), 1))
    meta = {"width": int(width), "height": int(height), "n_cameras": cams, "tile_size": tile_size}
    return torch.stack(images), torch.stack(alphas), meta
