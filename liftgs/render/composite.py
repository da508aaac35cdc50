"""Pixel x Gaussian weights of one view and compositing: values = W @ attributes + T * bg.

Compositing is linear in the attributes (ARCHITECTURE.md, "Rendering"), so one ``W`` per
view serves RGB, a feature map and hundreds of mask probabilities alike (paper Sec. 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.render.numba_backend import CsrLayout, composite_csr
from liftgs.render.projection import Projection
from liftgs.render.rasterize import BlockLayout


@dataclass
class RenderWeights:
    """Weights of one view: rows = rendered ``pixels``, columns = the N Gaussians.

    Stored as a pixel-major pair list (``layout`` a ``CsrLayout``, numba path: ``values`` [M]),
    as dense blocks (``layout`` a ``BlockLayout``, torch path: ``values`` [sum g L, S]) or as
    a dense [P, N] matrix (``layout`` None, reference path: ``values`` [P, N]).
    ``values`` and ``transmittance`` carry the gradients back to the geometry.
    """

    pixels: Tensor  # [P] long, flat pixel ids y * W + x
    values: Tensor  # see above
    transmittance: Tensor  # [P] final transmittance T
    width: int
    height: int
    num_gaussians: int
    layout: CsrLayout | BlockLayout | None = None
    projection: Projection | None = None

    @property
    def num_pixels(self) -> int:
        return int(self.pixels.numel())

    @property
    def alpha(self) -> Tensor:  # [P]
        return 1.0 - self.transmittance

    def to_coo(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rows [M], gaussian_ids [M], weights [M]) of the nonzero entries, differentiable."""
        if self.layout is None:
            r, c = torch.nonzero(self.values.detach(), as_tuple=True)
            return r, c, self.values[r, c]
        if isinstance(self.layout, CsrLayout):
            ids = torch.from_numpy(self.layout.ids).long()
            return self.layout.rows().to(ids.device), ids, self.values
        lay = self.layout
        dev = self.values.device
        g, L = torch.tensor(lay.groups, dtype=torch.long, device=dev).reshape(-1, 2).unbind(1)
        block_of_row = torch.repeat_interleave(
            torch.arange(lay.rows.shape[0], device=dev), torch.repeat_interleave(L, g))
        i, s = torch.nonzero(self.values.detach(), as_tuple=True)
        return lay.rows[block_of_row[i], s], lay.ids[i], self.values[i, s]

    def to_dense(self) -> Tensor:  # [P, N], for tests and debugging
        if self.layout is None:
            return self.values
        r, c, v = self.to_coo()
        W = v.new_zeros(self.num_pixels, self.num_gaussians)
        return W.index_put((r, c), v, accumulate=True)


def _composite_blocks(weights: RenderWeights, attributes: Tensor) -> Tensor:
    """Batched products per group of blocks: [g, S, L] @ [g, L, C]."""
    lay, C = weights.layout, attributes.shape[1]
    sizes = [g * L for g, L in lay.groups]
    vals = weights.values.to(attributes.dtype).split(sizes)
    attr = attributes.index_select(0, lay.ids).split(sizes)  # one gather for all groups
    outs = [torch.bmm(v.view(g, L, -1).transpose(1, 2), a.view(g, L, C))
            for (g, L), v, a in zip(lay.groups, vals, attr)]
    outs.append(attributes.new_zeros(1, lay.S, C))  # slot of pixels no Gaussian reaches
    return torch.cat([o.reshape(-1, C) for o in outs]).index_select(0, lay.pixel_slot)


def composite(
    weights: RenderWeights,
    attributes: Tensor,  # [N, C]
    background: Tensor | None = None,  # [C]
) -> tuple[Tensor, Tensor]:
    """Composite per-Gaussian attributes: (values [P, C], alpha [P]).

    values = W @ attributes + T_final * background. Call it as often as needed on one
    ``weights``: the geometry is not recomputed.
    """
    if attributes.ndim != 2 or attributes.shape[0] != weights.num_gaussians:
        raise ValueError(
            f"composite: attributes must be [N={weights.num_gaussians}, C], "
            f"got {list(attributes.shape)}"
        )
    if weights.layout is None:
        out = weights.values.to(attributes.dtype) @ attributes
    elif isinstance(weights.layout, CsrLayout):
        out = composite_csr(weights.layout, weights.values, attributes)
    else:
        out = _composite_blocks(weights, attributes)
    T = weights.transmittance.to(attributes.dtype)
    if background is not None:
        bg = background.to(attributes)
        if bg.shape != (attributes.shape[1],):
            raise ValueError(
                f"composite: background must be [C={attributes.shape[1]}], got {list(bg.shape)}")
        out = out + T[:, None] * bg
    return out, 1.0 - T
