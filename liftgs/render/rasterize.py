"""Fast sparse weights: tile binning (no grad) -> front-to-back rounds -> differentiable W.

Three steps, all vectorised torch (no Python loop over pixels or Gaussians):

1. ``bin_to_blocks`` groups the rendered pixels into 16x16 screen tiles ("blocks") and lists,
   per block, the Gaussians whose conservative extent box reaches one of its pixel centres,
   in depth order (stable, ties by index) — gsplat's tile intersection.
2. ``select_pairs`` walks every block's list front to back in rounds of ``ROUND`` Gaussians
   as dense [blocks, pixels, ROUND] arrays, applying the alpha and transmittance rules, and
   drops blocks whose pixels are all finished. It returns the blended (pixel, Gaussian)
   pairs in CSR order. No gradient: this only decides *which* pairs blend.
3. ``blend_weights`` recomputes alpha of the selected pairs with autograd and turns them
   into w = alpha * T with a segmented-product Function whose backward is closed-form.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function

from liftgs.render.composite import RenderWeights
from liftgs.render.projection import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    Projection,
    gaussian_sigma,
    pixel_centres,
)

TILE = 16  # block side in pixels; the image does not depend on it (exact extents)
ROUND = 32  # Gaussians per block handled per round


def bin_to_blocks(
    proj: Projection, pixels: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Blocks of pixels and their depth-ordered Gaussian lists (no grad).

    Returns ``block_rows`` [B, S] (index into ``pixels``, -1 = padding), ``list_ptr`` [B + 1]
    and ``list_ids`` [I] (Gaussian ids, block-major, front to back within a block).
    """
    dev = pixels.device
    tiles_x = (width + TILE - 1) // TILE
    px, py = pixels % width, pixels // width
    tile = (py // TILE) * tiles_x + px // TILE  # [P]
    order = torch.sort(tile, stable=True).indices
    uniq, counts = torch.unique_consecutive(tile[order], return_counts=True)
    nb, S = uniq.numel(), int(counts.max()) if counts.numel() else 0
    start = torch.cumsum(counts, 0) - counts
    block_of = torch.repeat_interleave(torch.arange(nb, device=dev), counts)
    slot = torch.arange(order.numel(), device=dev) - start[block_of]
    block_rows = torch.full((nb, S), -1, dtype=torch.long, device=dev)
    block_rows[block_of, slot] = order
    # tight pixel-centre box of each block (matters when rendering a sparse pixel subset)
    inf = torch.iinfo(torch.long).max
    lo_x = torch.full((nb,), inf, device=dev).scatter_reduce(0, block_of, px[order], "amin")
    hi_x = torch.full((nb,), -1, device=dev).scatter_reduce(0, block_of, px[order], "amax")
    lo_y = torch.full((nb,), inf, device=dev).scatter_reduce(0, block_of, py[order], "amin")
    hi_y = torch.full((nb,), -1, device=dev).scatter_reduce(0, block_of, py[order], "amax")
    tile_to_block = torch.full((tiles_x * ((height + TILE - 1) // TILE),), -1, device=dev)
    tile_to_block[uniq] = torch.arange(nb, device=dev)

    # Gaussians front to back; enumerate the tiles each one's extent box covers
    g = torch.nonzero(proj.valid).squeeze(1)
    g = g[torch.sort(proj.depths.detach()[g], stable=True).indices]
    uv, ext = proj.means2d.detach()[g], proj.extents[g]
    margin = 1e-3  # px; the box is exact, the margin only guards rounding
    x0 = torch.ceil(uv[:, 0] - ext[:, 0] - 0.5 - margin).clamp(0, width - 1).long()
    x1 = torch.floor(uv[:, 0] + ext[:, 0] - 0.5 + margin).clamp(0, width - 1).long()
    y0 = torch.ceil(uv[:, 1] - ext[:, 1] - 0.5 - margin).clamp(0, height - 1).long()
    y1 = torch.floor(uv[:, 1] + ext[:, 1] - 0.5 + margin).clamp(0, height - 1).long()
    tx0, tx1, ty0, ty1 = x0 // TILE, x1 // TILE, y0 // TILE, y1 // TILE
    ntx = tx1 - tx0 + 1
    n = ntx * (ty1 - ty0 + 1)
    gi = torch.repeat_interleave(torch.arange(g.numel(), device=dev), n)
    local = torch.arange(gi.numel(), device=dev) - (torch.cumsum(n, 0) - n)[gi]
    t = (ty0[gi] + local // ntx[gi]) * tiles_x + tx0[gi] + local % ntx[gi]
    b = tile_to_block[t]
    keep = b >= 0
    gi, b = gi[keep], b[keep]
    keep = (x0[gi] <= hi_x[b]) & (x1[gi] >= lo_x[b]) & (y0[gi] <= hi_y[b]) & (y1[gi] >= lo_y[b])
    gi, b = gi[keep], b[keep]
    by_block = torch.sort(b, stable=True).indices  # stable: depth order kept inside a block
    list_ids = g[gi[by_block]]
    list_ptr = torch.zeros(nb + 1, dtype=torch.long, device=dev)
    list_ptr[1:] = torch.cumsum(torch.bincount(b, minlength=nb), 0)
    return block_rows, list_ptr, list_ids


@torch.no_grad()
def select_pairs(
    proj: Projection,
    opacities: Tensor,  # [N]
    pixels: Tensor,  # [P]
    width: int,
    block_rows: Tensor,  # [B, S]
    list_ptr: Tensor,  # [B + 1]
    list_ids: Tensor,  # [I]
) -> tuple[Tensor, Tensor, Tensor]:
    """Blended pairs in CSR order: (rowptr [P + 1], rows [M], gaussian_ids [M]).

    gsplat's per-pixel loop, vectorised: within a round, transmittance is a cumulative
    product over the round's Gaussians; a pixel ends at the first Gaussian that would take
    T to <= 1e-4 (not blended). Blocks whose pixels have all ended are dropped.
    """
    dev, P = pixels.device, pixels.numel()
    means2d, conics = proj.means2d.detach(), proj.conics.detach()
    opac = opacities.detach().to(means2d.dtype)
    xy = torch.cat([pixel_centres(pixels, width, means2d.dtype), means2d.new_zeros(1, 2)])
    T = means2d.new_ones(P + 1)  # row P is the padding sentinel
    done = torch.zeros(P + 1, dtype=torch.bool, device=dev)
    done[P] = True
    count = torch.zeros(P + 1, dtype=torch.long, device=dev)
    rows_pad = torch.where(block_rows < 0, P, block_rows)
    lengths = list_ptr[1:] - list_ptr[:-1]
    active = torch.nonzero(lengths > 0).squeeze(1)
    out_rows, out_ids, out_off = [], [], []
    r = 0
    while active.numel():
        br = rows_pad[active]  # [b, S]
        j = list_ptr[active, None] + r * ROUND + torch.arange(ROUND, device=dev)  # [b, R]
        in_list = j < list_ptr[active + 1, None]
        gid = list_ids[torch.where(in_list, j, 0)] if list_ids.numel() else j * 0
        d = xy[br][:, :, None, :] - means2d[gid][:, None, :, :]  # [b, S, R, 2]
        sigma = gaussian_sigma(d, conics[gid][:, None])
        alpha = torch.clamp(opac[gid][:, None] * torch.exp(-sigma), max=ALPHA_MAX)
        ok = (sigma >= 0) & (alpha >= ALPHA_MIN) & in_list[:, None] & ~done[br][:, :, None]
        alpha = torch.where(ok, alpha, torch.zeros_like(alpha))
        one_minus = 1.0 - alpha
        next_T = T[br][:, :, None] * torch.cumprod(one_minus, dim=-1)
        blended = ok & (next_T > T_MIN)
        T[br] = T[br] * torch.where(blended, one_minus, torch.ones_like(one_minus)).prod(-1)
        done[br] |= (ok & ~blended).any(-1)
        done[P] = True
        rank = torch.cumsum(blended, dim=-1) - 1
        bi, si, ri = torch.nonzero(blended, as_tuple=True)
        row = br[bi, si]
        out_rows.append(row)
        out_ids.append(gid[bi, ri])
        out_off.append(count[row] + rank[bi, si, ri])
        count[br] += blended.sum(-1)
        r += 1
        more = (lengths[active] > r * ROUND) & ~done[br].all(-1)
        active = active[more]
    rows = torch.cat(out_rows) if out_rows else torch.zeros(0, dtype=torch.long, device=dev)
    ids = torch.cat(out_ids) if out_ids else torch.zeros(0, dtype=torch.long, device=dev)
    off = torch.cat(out_off) if out_off else torch.zeros(0, dtype=torch.long, device=dev)
    rowptr = torch.zeros(P + 1, dtype=torch.long, device=dev)
    rowptr[1:] = torch.cumsum(count[:P], 0)
    pos = rowptr[rows] + off
    csr_rows = torch.empty_like(rows).index_put_((pos,), rows)
    csr_ids = torch.empty_like(ids).index_put_((pos,), ids)
    return rowptr, csr_rows, csr_ids


class _SegmentTransmittance(Function):
    """Per-row front-to-back blending of alphas [M] (CSR rows): w = alpha * T, T_final.

    T_k = prod_{j<k} (1 - alpha_j) within the row, taken as exp of a float64 segmented
    cumulative sum of log(1 - alpha). Backward (closed form, per entry k of row p):
    dL/dalpha_k = g_k T_k - (sum_{i>k} g_i w_i + gT_p T_final_p) / (1 - alpha_k).
    """

    @staticmethod
    def forward(ctx, alpha, rowptr, rows):  # noqa: D102
        P = rowptr.numel() - 1
        la = torch.log1p(-alpha.to(torch.float64))
        cs = torch.cumsum(la, 0)
        excl = cs - la
        first = rowptr[:-1].clamp_max(max(la.numel() - 1, 0))
        base = excl[first] if la.numel() else la.new_zeros(P)  # [P]
        T_before = torch.exp(excl - base[rows])
        last = (rowptr[1:] - 1).clamp_min(0)
        end = cs[last] if la.numel() else la.new_zeros(P)
        nonempty = rowptr[1:] > rowptr[:-1]
        T_final = torch.where(nonempty, torch.exp(end - base), torch.ones_like(base))
        w = alpha.to(torch.float64) * T_before
        ctx.save_for_backward(alpha, w, T_before, T_final, rowptr, rows)
        return w.to(alpha.dtype), T_final.to(alpha.dtype)

    @staticmethod
    def backward(ctx, grad_w, grad_T):  # noqa: D102
        alpha, w, T_before, T_final, rowptr, rows = ctx.saved_tensors
        if alpha.numel() == 0:
            return torch.zeros_like(alpha), None, None
        gw = grad_w.to(torch.float64)
        cs = torch.cumsum(gw * w, 0)
        end = cs[(rowptr[1:] - 1).clamp_min(0)]  # [P]
        tail = end[rows] - cs + grad_T.to(torch.float64)[rows] * T_final[rows]
        grad_alpha = gw * T_before - tail / (1.0 - alpha.to(torch.float64))
        return grad_alpha.to(alpha.dtype), None, None


def blend_weights(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int, rowptr: Tensor,
    rows: Tensor, ids: Tensor,
) -> tuple[Tensor, Tensor]:
    """Differentiable (w [M], T_final [P]) of the selected pairs."""
    d = pixel_centres(pixels[rows], width, proj.means2d.dtype) - proj.means2d[ids]
    sigma = gaussian_sigma(d, proj.conics[ids])
    alpha = torch.clamp(opacities.to(sigma.dtype)[ids] * torch.exp(-sigma), max=ALPHA_MAX)
    return _SegmentTransmittance.apply(alpha, rowptr, rows)


def sparse_weights(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int, height: int
) -> RenderWeights:
    """``RenderWeights`` of ``pixels`` [P] from a projection (the fast CPU path)."""
    blocks = bin_to_blocks(proj, pixels, width, height)
    rowptr, rows, ids = select_pairs(proj, opacities, pixels, width, *blocks)
    w, T = blend_weights(proj, opacities, pixels, width, rowptr, rows, ids)
    return RenderWeights(pixels=pixels, rowptr=rowptr, rows=rows, gaussian_ids=ids, values=w,
                         transmittance=T, width=width, height=height,
                         num_gaussians=opacities.shape[0], projection=proj)
