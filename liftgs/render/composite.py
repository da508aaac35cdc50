"""Pixel x Gaussian weights of one view and compositing: values = W @ attributes + T * bg.

Compositing is linear in the attributes (paper Sec. 3.2, eq. 2), so one ``W`` per
view serves RGB, a feature map and hundreds of mask probabilities alike (paper Sec. 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.render.backends.numba.csr import CsrLayout, composite_csr
from liftgs.render.backends.torch import BlockLayout
from liftgs.render.projection import Projection, float32


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

    @property
    def can_subset(self) -> bool:
        """:meth:`subset` works for pair-list (numba) and dense (reference) weights."""
        return self.layout is None or isinstance(self.layout, CsrLayout)

    def subset(self, pixels: Tensor) -> "RenderWeights":
        """The weights of ``pixels`` [Q] (flat ids, repeats allowed; each must be one of this
        view's rendered pixels) without rasterising again: their rows, differentiable
        through this view's ``values`` and ``transmittance``. A training step composites RGB
        over the full image and masks / features at sampled pixels from one rasterisation."""
        if not self.can_subset:
            raise ValueError("RenderWeights.subset needs pair-list (numba) or dense weights, "
                             f"not {type(self.layout).__name__}; render the pixels with render_weights")
        pixels = pixels.to(device=self.pixels.device, dtype=torch.long).reshape(-1)
        slot = torch.full((self.width * self.height,), -1, dtype=torch.long, device=self.pixels.device)
        slot[self.pixels] = torch.arange(self.num_pixels, device=self.pixels.device)
        if pixels.numel() and (pixels.min() < 0 or pixels.max() >= slot.numel()):
            raise ValueError(f"RenderWeights.subset: pixels must lie in [0, {slot.numel()}) for a "
                             f"{self.width}x{self.height} image")
        positions = slot[pixels]
        if (positions < 0).any():
            missing = pixels[positions < 0][:5].tolist()
            raise ValueError(f"RenderWeights.subset: pixels {missing} were not rendered in this view")
        T = self.transmittance.index_select(0, positions)
        if self.layout is None:
            values, layout = self.values.index_select(0, positions), None
        else:
            layout, pairs = self.layout.subset_rows(positions.cpu().numpy())
            values = self.values.index_select(0, torch.from_numpy(pairs).to(self.values.device))
        return RenderWeights(pixels=pixels, values=values, transmittance=T, width=self.width,
                             height=self.height, num_gaussians=self.num_gaussians, layout=layout,
                             projection=self.projection)

    def used_gaussians(self) -> Tensor:
        """[G] long, ascending: the Gaussians with a nonzero weight in this view (the rows
        :func:`composite` needs with ``gaussians=``)."""
        if isinstance(self.layout, CsrLayout):
            return torch.from_numpy(self.layout.used_gaussians().copy()).to(self.pixels.device)
        used = torch.zeros(self.num_gaussians, dtype=torch.bool, device=self.pixels.device)
        used[self.to_coo()[1]] = True
        return torch.nonzero(used).reshape(-1)

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
    attributes: Tensor,  # [N, C], or [len(gaussians), C]
    background: Tensor | None = None,  # [C]
    gaussians: Tensor | None = None,  # [G] long, ascending: the Gaussians ``attributes`` holds
) -> tuple[Tensor, Tensor]:
    """Composite per-Gaussian attributes: (values [P, C], alpha [P]).

    values = W @ attributes + T_final * background. Call it as often as needed on one
    ``weights``: the geometry is not recomputed. With ``gaussians`` (e.g.
    ``weights.used_gaussians()``), ``attributes`` holds only those rows; every Gaussian with a
    weight in this view must be among them.
    """
    (attributes,) = float32(attributes)  # float32 even under mixed precision
    with torch.autocast(attributes.device.type, enabled=False):
        return _composite(weights, attributes, background, gaussians)


def _composite(weights: RenderWeights, attributes: Tensor, background: Tensor | None,
               gaussians: Tensor | None) -> tuple[Tensor, Tensor]:
    rows = weights.num_gaussians if gaussians is None else int(gaussians.numel())
    if attributes.ndim != 2 or attributes.shape[0] != rows:
        what = f"N={rows}" if gaussians is None else f"len(gaussians)={rows}"
        raise ValueError(f"composite: attributes must be [{what}, C], got {list(attributes.shape)}")
    if gaussians is not None:
        _check_covers(weights, gaussians)
    compact = (gaussians is not None and isinstance(weights.layout, CsrLayout)
               and weights.layout.use_sparse(attributes.shape[1]))  # torch CSR form: compact rows
    if compact:
        out = composite_csr(weights.layout, weights.values, attributes, gaussians)
    else:
        if gaussians is not None:  # the other forms read all N rows: zeros for the unused ones
            attributes = attributes.new_zeros(weights.num_gaussians, attributes.shape[1]).index_copy(
                0, gaussians.to(attributes.device), attributes)
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


def _check_covers(weights: RenderWeights, gaussians: Tensor) -> None:
    """``gaussians`` ascending and holding every Gaussian that has a weight in ``weights``."""
    g = gaussians.reshape(-1).to(device=weights.pixels.device, dtype=torch.long)
    if g.numel() > 1 and bool((g[1:] <= g[:-1]).any()):
        raise ValueError("composite: gaussians must be ascending without repeats")
    used = weights.used_gaussians()
    if g.numel() and (int(g[0]) < 0 or int(g[-1]) >= weights.num_gaussians):
        raise ValueError(f"composite: gaussians must lie in [0, {weights.num_gaussians})")
    pos = torch.searchsorted(g, used).clamp_max(max(g.numel() - 1, 0))
    missing = used[g[pos] != used] if g.numel() else used
    if missing.numel():
        raise ValueError(f"composite: Gaussians {missing[:5].tolist()} have weights in this view "
                         "but no attributes (pass every one of weights.used_gaussians())")


@dataclass
class RenderInfo:
    """What ``render`` computed besides the image: the reusable weights and the projection
    (both None from backends that keep them to themselves, e.g. gsplat)."""

    weights: RenderWeights | None
    projection: Projection | None
    backend: str
