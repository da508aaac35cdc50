"""Slow, obvious dense reference: every pixel x every Gaussian, the same math as the fast path.

Used by the tests (values and gradients) and by ``benchmarks/render.py``. Memory is
O(pixels x Gaussians); pixels are processed in chunks under activation checkpointing so that
moderate scenes still fit.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from liftgs.render.projection import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    Projection,
    gaussian_sigma,
    pixel_centres,
)


def dense_weights(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int
) -> tuple[Tensor, Tensor]:
    """Weights [P, N] (w = alpha * T, zero where not blended) and final transmittance [P].

    Straight from the definition: sort Gaussians by camera z (stable, so ties keep index
    order), alpha = min(0.99, o exp(-sigma)), skip alpha < 1/255, and stop a pixel's list at
    the first Gaussian that would take its transmittance to <= 1e-4 (that one is not blended).
    """
    order = torch.sort(proj.depths.detach(), stable=True).indices
    means2d, conics = proj.means2d[order], proj.conics[order]
    valid, opac = proj.valid[order], opacities[order]
    xy = pixel_centres(pixels, width, means2d.dtype)  # [P, 2]
    sigma = gaussian_sigma(xy[:, None, :] - means2d[None], conics[None])  # [P, N]
    alpha = torch.clamp(opac[None] * torch.exp(-sigma), max=ALPHA_MAX)
    keep = valid[None] & (sigma >= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    T_after = torch.cumprod(one_minus, dim=1)
    T_before = torch.cat([torch.ones_like(T_after[:, :1]), T_after[:, :-1]], dim=1)
    blended = keep & (T_after.detach() > T_MIN)
    w_sorted = torch.where(blended, alpha * T_before, torch.zeros_like(alpha))
    T_final = torch.where(blended, one_minus, torch.ones_like(one_minus)).prod(dim=1)
    w = torch.zeros_like(w_sorted).index_copy(1, order, w_sorted)
    return w, T_final


def render_reference(
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
    pixels: Tensor | None = None,  # [P] flat pixel ids, default all
    chunk: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Dense reference render: (values [P, C], alpha [P]); P = H*W unless ``pixels`` given."""
    from liftgs.render.projection import project_gaussians

    proj = project_gaussians(means, quats, scales, opacities, viewmat, K, width, height)
    if pixels is None:
        pixels = torch.arange(width * height, device=means.device)

    def run(pix: Tensor, m2d: Tensor, con: Tensor, op: Tensor, att: Tensor):
        p = Projection(m2d, con, proj.depths, proj.extents, proj.valid)
        w, T = dense_weights(p, op, pix, width)
        return w @ att, T

    outs, Ts = [], []
    for start in range(0, pixels.numel(), chunk):
        pix = pixels[start : start + chunk]
        args = (pix, proj.means2d, proj.conics, opacities, attributes)
        if torch.is_grad_enabled():
            v, T = checkpoint(run, *args, use_reentrant=False)
        else:
            v, T = run(*args)
        outs.append(v)
        Ts.append(T)
    C = attributes.shape[1]
    values = torch.cat(outs) if outs else attributes.new_zeros(0, C)
    T = torch.cat(Ts) if Ts else attributes.new_zeros(0)
    if background is not None:
        values = values + T[:, None] * background.to(values)
    return values, 1.0 - T
