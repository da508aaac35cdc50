"""Render a scene's predictions into one view for the 2D losses (paper Sec 3.2, eq. 2).

Compositing is linear in the per-Gaussian attributes, so the sparse pixel x Gaussian weights
of the view are computed once and reused: the full RGB image for the photometric loss, and on
the sampled pixels the features (eq. 7) and the mask probabilities sigmoid(M) of every decoder
layer (deep supervision) in a single sparse product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.types import Gaussians, Grounding


@dataclass
class RenderedView:
    rgb: Tensor | None  # [H, W, 3] full image, or None when the RGB loss is off
    mask_probs: list[Tensor]  # per decoder layer (earliest first, final last): [m, Np]
    features: Tensor | None  # [Np, F] at the sampled pixels, or None
    alpha: Tensor  # [Np] accumulated opacity at the sampled pixels


def select_rows(weights, rows: Tensor):
    """The sub-``RenderWeights`` of the given rows (positions in ``weights.pixels``).

    Row selection keeps the gradient path (the selected ``values`` are indexed, not copied),
    so compositing the subset equals compositing everything and then indexing — at a
    fraction of the cost when only a few thousand pixels are supervised.
    """
    from liftgs.render import RenderWeights

    rows = rows.to(device=weights.rowptr.device, dtype=torch.long)
    start = weights.rowptr[rows]  # [R]
    counts = weights.rowptr[rows + 1] - start  # [R]
    rowptr = torch.zeros(rows.numel() + 1, dtype=torch.long, device=rows.device)
    rowptr[1:] = counts.cumsum(0)
    total = int(rowptr[-1])
    new_rows = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    entry = torch.repeat_interleave(start - rowptr[:-1], counts) + torch.arange(total, device=rows.device)
    return RenderWeights(pixels=weights.pixels[rows], rowptr=rowptr, rows=new_rows,
                         gaussian_ids=weights.gaussian_ids[entry], values=weights.values[entry],
                         transmittance=weights.transmittance[rows], width=weights.width,
                         height=weights.height, num_gaussians=weights.num_gaussians,
                         projection=weights.projection)


def grounding_layers(grounding: Grounding) -> list[Grounding]:
    """Every decoder layer's prediction, earliest first and the final layer last."""
    return [*grounding.aux, grounding]


def render_view(gaussians: Gaussians, grounding: Grounding, viewmat: Tensor, K: Tensor,
                width: int, height: int, pixels: Tensor, want_rgb: bool = True,
                want_features: bool = True) -> RenderedView:
    """Render RGB (full image), features and per-layer mask probabilities (sampled pixels)."""
    from liftgs.render import composite, render_weights

    g = gaussians
    layers = grounding_layers(grounding)
    m = layers[-1].mask_logits.shape[0]
    if want_rgb:
        full = render_weights(g.means, g.quats, g.scales, g.opacities, viewmat, K, width, height)
        rgb, _ = composite(full, g.colors)  # [H*W, 3], black background
        rgb = rgb.reshape(height, width, 3)
        sub = select_rows(full, pixels)
    else:
        rgb = None
        sub = render_weights(g.means, g.quats, g.scales, g.opacities, viewmat, K, width, height,
                             pixels=pixels)
    attrs = [torch.sigmoid(layer.mask_logits).T for layer in layers]  # L x [N, m]
    if want_features:
        if g.features is None:
            raise ValueError("the feature loss is on but the model predicts no Gaussian features")
        attrs.append(g.features)
    values, alpha = composite(sub, torch.cat(attrs, dim=1))  # [Np, L*m (+F)]
    probs = [values[:, i * m:(i + 1) * m].T for i in range(len(layers))]
    feats = values[:, len(layers) * m:] if want_features else None
    return RenderedView(rgb=rgb, mask_probs=probs, features=feats, alpha=alpha)
