"""Render a scene's predictions into one view for the 2D losses (paper Sec 3.2, eq. 2).

Compositing is linear in the per-Gaussian attributes, so a view's pixel x Gaussian weights
are computed once and several quantities are composited from them in one product. Colours
are composited over the full image (photometric loss); features (eq. 7) and the mask
probabilities sigmoid(M) of every decoder layer (deep supervision) at the supervised
pixels. On CPU those come from the pixels' own weights; on CUDA gsplat rasterises every
channel over the whole image (docs/gpu.md), and the same loss code reads the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from liftgs.losses.feature import LowRankFeatures
from liftgs.models.liftgs.factors import stacked_factors
from liftgs.modules.gaussian_head import LowRankGaussians
from liftgs.types import Gaussians, Grounding

if TYPE_CHECKING:
    from liftgs.render.backends.gsplat import Rasterize


@dataclass
class RenderedView:
    rgb: Tensor | None  # [H, W, 3] full image, or None when the RGB loss is off
    mask_probs: list[Tensor]  # per decoder layer (earliest first, final last): [m, Np]
    features: Tensor | LowRankFeatures | None  # [Np, F] at the sampled pixels (factored when
    # the model's features are low-rank: the loss never forms [Np, F]), or None
    alpha: Tensor  # [Np] accumulated opacity at the sampled pixels


def grounding_layers(grounding: Grounding) -> list[Grounding]:
    """Every decoder layer's prediction, earliest first and the final layer last."""
    return [*grounding.aux, grounding]


def render_view(gaussians: Gaussians, grounding: Grounding, viewmat: Tensor, K: Tensor,
                width: int, height: int, pixels: Tensor, want_rgb: bool = True,
                want_features: bool = True, rasterize: Rasterize | str | None = "auto",
                want_masks: bool = True) -> RenderedView:
    """Render RGB (full image), features and per-layer mask probabilities (sampled pixels).

    ``want_masks=False`` (a loss set without grounding) renders no masks: ``mask_probs`` is
    empty.

    ``rasterize``: "auto" renders with gsplat on CUDA when it is installed (every channel over
    the whole image, one call, then the sampled pixels) and through the renderer's weights
    otherwise; a function with ``gsplat.rasterization``'s signature forces that path (the CPU
    tests pass :func:`liftgs.render.reference_rasterization`), None forces the weights path.
    """
    from liftgs.render import resolve_rasterizer

    g = gaussians
    layers = grounding_layers(grounding) if want_masks else []
    m = grounding.token_logits.shape[0]
    low_rank = (want_features and isinstance(g, LowRankGaussians) and g.feature_basis is not None
                and g.feature_weight is not None)
    if want_features and g.features is None and not low_rank:
        raise ValueError("the feature loss is on but the model predicts no Gaussian features")
    if not (want_masks or want_features):
        raise ValueError("render_view: nothing to render at the sampled pixels (want_masks and "
                         "want_features are both off)")
    rasterize = resolve_rasterizer(rasterize, g.means.device)
    if rasterize is not None:
        rgb, values, alpha = _rasterize_all(rasterize, g, layers, viewmat, K, width, height, pixels,
                                            want_rgb, want_features, low_rank)
    else:
        rgb, values, alpha = _render_weights_path(g, layers, viewmat, K, width, height, pixels,
                                                  want_rgb, want_features, low_rank)
    probs = [values[:, i * m:(i + 1) * m].T for i in range(len(layers))]  # values: [Np, C]
    feats = values[:, len(layers) * m:] if want_features else None
    if low_rank:  # composite(basis) @ W.T + alpha * b == composite(basis @ W.T + b): linear
        feats = LowRankFeatures(feats, alpha, g.feature_weight, g.feature_bias)
    return RenderedView(rgb=rgb, mask_probs=probs, features=feats, alpha=alpha)


def _render_weights_path(g: Gaussians, layers: list[Grounding], viewmat: Tensor, K: Tensor,
                         width: int, height: int, pixels: Tensor, want_rgb: bool,
                         want_features: bool, low_rank: bool):
    """CPU (and CUDA without gsplat): one rasterisation's weights, RGB over the image, the
    supervised channels at the sampled pixels from those pixels' rows."""
    from liftgs.render import composite, render_weights

    rgb = full = None
    if want_rgb:  # colours over the full image (3 channels)
        full = render_weights(g.means, g.quats, g.scales, g.opacities, viewmat, K, width, height)
        rgb = composite(full, g.colors)[0].reshape(height, width, 3)  # black background
    # masks and features only where they are supervised: the sampled pixels' rows of the
    # full image's weights (or their own rasterisation without RGB); compositing ~200
    # channels everywhere would cost far more
    if full is not None and full.can_subset:
        sub = full.subset(pixels)
    else:
        sub = render_weights(g.means, g.quats, g.scales, g.opacities, viewmat, K, width, height, pixels=pixels)
    values, alpha = _composite_supervised(sub, layers, g, want_features, low_rank)  # [Np, C]
    return rgb, values, alpha


def _rasterize_all(rasterize: Rasterize, g: Gaussians, layers: list[Grounding], viewmat: Tensor,
                   K: Tensor, width: int, height: int, pixels: Tensor, want_rgb: bool,
                   want_features: bool, low_rank: bool):
    """gsplat (or a substitute with its signature): RGB, every layer's mask probabilities and
    the features of every Gaussian in one N-channel rasterisation of the whole image (gsplat
    chunks the channels), then the supervised channels at the sampled pixels."""
    from liftgs.render.backends.gsplat import rasterize_view

    factors = stacked_factors(layers) if layers else None
    if factors is None:
        attrs = [torch.sigmoid(layer.logits_at()).T for layer in layers]  # L x [N, m]
    else:
        attrs = [torch.sigmoid(factors.point_logits())]  # [N, L * m]
    if want_features:
        attrs.append(g.feature_basis if low_rank else g.features)
    if want_rgb:
        attrs.insert(0, g.colors)
    values, alpha = rasterize_view(rasterize, g.means, g.quats, g.scales, g.opacities,
                                   torch.cat(attrs, dim=1), viewmat, K, width, height)
    rgb = values[:, :3].reshape(height, width, 3) if want_rgb else None
    pixels = pixels.to(device=values.device, dtype=torch.long).reshape(-1)
    sampled = values.index_select(0, pixels)
    return rgb, sampled[:, 3:] if want_rgb else sampled, alpha.index_select(0, pixels)


def _composite_supervised(sub, layers: list[Grounding], g: Gaussians, want_features: bool,
                          low_rank: bool) -> tuple[Tensor, Tensor]:
    """Every layer's mask probabilities (and the features) composited at the sampled pixels.

    With factored mask logits (``FactoredGrounding``, ``LiftGS.forward(lazy_masks=True)``) only the Gaussians these
    pixels see get logits, all layers from one product; otherwise every Gaussian's."""
    from liftgs.render import composite

    factors = stacked_factors(layers) if layers else None
    if factors is None:
        attrs = [torch.sigmoid(layer.logits_at()).T for layer in layers]  # L x [N, m]
        if want_features:
            attrs.append(g.feature_basis if low_rank else g.features)  # [N, H] or [N, F]
        return composite(sub, torch.cat(attrs, dim=1))
    used = sub.used_gaussians()
    attrs = [torch.sigmoid(factors.point_logits(used))]  # [G, L * m]
    if want_features:
        attrs.append((g.feature_basis if low_rank else g.features).index_select(0, used))
    return composite(sub, torch.cat(attrs, dim=1), gaussians=used)
