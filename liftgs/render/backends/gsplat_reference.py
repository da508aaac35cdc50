"""``gsplat.rasterization`` computed by this project's renderer: the substitute through which
the CPU test suite runs every line of the CUDA training glue (docs/renderer.md)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from liftgs.render.api import render_weights
from liftgs.render.composite import composite
from liftgs.render.projection import NEAR_PLANE


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
