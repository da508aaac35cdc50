"""Fast sparse weights as dense blocks: front-to-back selection, closed-form backward.

The weights of one pixel block (<= 8x8 pixels of one screen tile) form a small dense matrix
[L, S]: its L columns are the Gaussians blended into at least one of its S pixels, front
to back. Blocks with similar L are padded into groups [g, L, S], so that compositing is a
batched matrix product (fast on CPU) rather than a scatter over individual pairs.

Forward (no autograd graph): per round, every active block takes the next ``ROUND``
Gaussians of its tile list and applies gsplat's per-pixel rules to a dense
[blocks, ROUND, S] array; blocks whose pixels have all ended are dropped. Backward
(``_BlockWeights.backward``) recomputes alpha per group and applies the closed-form
gradient of w = alpha * T (see ``_group_backward``); nothing per pair is kept except W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd import Function

from liftgs.render.binning import Blocks, bin_to_blocks
from liftgs.render.projection import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    Projection,
    pixel_centres,
)

ROUND = 16  # Gaussians per block and round in the forward selection
GROUP_BUDGET = 1 << 20  # max elements g * L * S of one group (bounds backward memory)


@dataclass
class BlockLayout:
    """Where the weights live (no grad). Groups are consecutive runs of blocks.

    ``groups`` [(g, L)]: group k holds g blocks padded to L columns; its values are the next
    g * L rows of ``W.values`` viewed as [g, L, S]. ``ids`` [sum g L] is the Gaussian of each
    column (0 with zero weight on padding); ``rows`` [sum g, S] the pixel (index into
    ``pixels``, -1 = pad) of each block slot; ``pixel_slot`` [P] the slot k * S + s of each
    pixel, or sum(g) * S when no Gaussian reaches it.
    """

    groups: list[tuple[int, int]]
    S: int
    ids: Tensor  # [sum g L] long
    rows: Tensor  # [sum g, S] long
    pixel_slot: Tensor  # [P] long

    @property
    def num_slots(self) -> int:
        return int(self.rows.shape[0]) * self.S


def _bucket(L: Tensor) -> Tensor:
    """Round column counts up to a coarse grid (<= 12.5 % padding) so groups stay few."""
    q = torch.pow(2, (torch.log2(L.clamp_min(1).double()).floor() - 3).clamp_min(3)).long()
    return (L + q - 1) // q * q


def _layout(used_count: Tensor, rows: Tensor, P: int) -> tuple[BlockLayout, Tensor, Tensor]:
    """Sort blocks into groups; return the layout, each block's first row, and group sizes."""
    dev, S = rows.device, rows.shape[1]
    kept = torch.nonzero(used_count > 0).squeeze(1)
    Lb = _bucket(used_count[kept])
    order = torch.sort(Lb, stable=True).indices
    kept, Lb = kept[order], Lb[order]
    # split buckets into chunks of at most GROUP_BUDGET elements
    _, counts = torch.unique_consecutive(Lb, return_counts=True)
    pos = torch.arange(kept.numel(), device=dev) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    chunk = pos // (GROUP_BUDGET // (Lb * S)).clamp_min(1)
    key = Lb * (kept.numel() + 1) + chunk
    _, gsize = torch.unique_consecutive(key, return_counts=True)
    gL = Lb[torch.cumsum(gsize, 0) - gsize] if gsize.numel() else gsize
    groups = list(zip(gsize.tolist(), gL.tolist()))
    first_row = torch.zeros(rows.shape[0], dtype=torch.long, device=dev)
    first_row[kept] = torch.cumsum(Lb, 0) - Lb
    block_rows = rows[kept]
    pixel_slot = torch.full((P,), kept.numel() * S, dtype=torch.long, device=dev)
    valid = block_rows >= 0
    pixel_slot[block_rows[valid]] = torch.arange(kept.numel() * S, device=dev).view(-1, S)[valid]
    ids = torch.zeros(int(Lb.sum()), dtype=torch.long, device=dev)
    return BlockLayout(groups, S, ids, block_rows, pixel_slot), first_row, Lb


@torch.no_grad()
def select_blocks(
    means2d: Tensor, conics: Tensor, opacities: Tensor, xy: Tensor, blocks: Blocks
) -> tuple[BlockLayout, Tensor, Tensor]:
    """Front-to-back rounds: (layout, values [sum g L, S], final transmittance [P])."""
    dev, P, S = xy.device, xy.shape[0], blocks.rows.shape[1]
    xs = torch.cat([xy[:, 0], xy.new_zeros(1)])  # row P: padding sentinel
    ys = torch.cat([xy[:, 1], xy.new_zeros(1)])
    mx, my = means2d[:, 0].contiguous(), means2d[:, 1].contiguous()
    ha, hb, hc = 0.5 * conics[:, 0], conics[:, 1].contiguous(), 0.5 * conics[:, 2]
    T = xy.new_ones(P + 1)
    alive = xy.new_ones(P + 1)  # 1.0 until the pixel's list has ended
    alive[P] = 0.0
    rows = torch.where(blocks.rows < 0, P, blocks.rows)
    start, end = blocks.list_ptr[blocks.tile], blocks.list_ptr[blocks.tile + 1]
    used_count = torch.zeros(blocks.num_blocks, dtype=torch.long, device=dev)
    active = torch.nonzero(end > start).squeeze(1)
    out_block, out_col, out_gid, out_w = [], [], [], []
    r = 0
    while active.numel():
        br = rows[active]  # [a, S]
        j = start[active, None] + r * ROUND + torch.arange(ROUND, device=dev)  # [a, R]
        in_list = j < end[active, None]
        gid = blocks.list_ids[torch.where(in_list, j, 0)]
        dx = xs[br][:, None, :] - mx[gid][:, :, None]  # [a, R, S]
        dy = ys[br][:, None, :] - my[gid][:, :, None]
        sigma = (dx * ha[gid][:, :, None]).mul_(dx)
        sigma.add_((dy * hc[gid][:, :, None]).mul_(dy)).addcmul_(dx * hb[gid][:, :, None], dy)
        o = (opacities[gid] * in_list)[:, :, None]
        alpha = torch.exp(-sigma).mul_(o).clamp_max_(ALPHA_MAX).mul_(alive[br][:, None, :])
        ok = (alpha >= ALPHA_MIN) & (sigma >= 0)  # sigma < 0 only by rounding (gsplat skips)
        alpha.mul_(ok)
        one_minus = 1.0 - alpha
        next_T = torch.cumprod(one_minus, dim=1).mul_(T[br][:, None, :])
        blended = ok & (next_T > T_MIN)
        w = (next_T / one_minus).mul_(alpha).mul_(blended)  # alpha * T_before
        # T changes only at ok entries, so the list ended iff the last next_T <= T_MIN
        T[br] = torch.where(blended, next_T, T[br][:, None, :]).amin(dim=1)
        alive[br] = alive[br] * (next_T[:, -1] > T_MIN)
        alive[P] = 0.0
        used = blended.any(dim=2)  # [a, R]
        col = used_count[active, None] + torch.cumsum(used, dim=1) - 1
        bi, ri = torch.nonzero(used, as_tuple=True)
        out_block.append(active[bi])
        out_col.append(col[bi, ri])
        out_gid.append(gid[bi, ri])
        out_w.append(w[bi, ri])
        used_count[active] += used.sum(dim=1)
        r += 1
        active = active[(end[active] - start[active] > r * ROUND) & (alive[br] > 0).any(dim=1)]
    layout, first_row, _ = _layout(used_count, blocks.rows, P)
    values = xy.new_zeros(layout.ids.numel(), S)  # [sum g L, S]
    if out_block:
        dest = first_row[torch.cat(out_block)] + torch.cat(out_col)
        values[dest] = torch.cat(out_w)
        layout.ids[dest] = torch.cat(out_gid)
    return layout, values, T[:P]


def _group_backward(
    means2d: Tensor, conics: Tensor, opacities: Tensor, xs: Tensor, ys: Tensor, ids: Tensor,
    w: Tensor, gw: Tensor, gT_Tf: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of one group w.r.t. its columns' (means2d, conics, opacities).

    ids [g, L], w / gw [g, L, S], pixel centres xs / ys [g, S], gT_Tf [g, S] = dL/dT_final * T_final.
    With w_k = alpha_k T_k and T_final = prod (1 - alpha_i) over the blended entries of a
    pixel: dL/dalpha_k = gw_k T_k - (sum_{i>k} gw_i w_i + gT T_final) / (1 - alpha_k); then
    alpha = o exp(-sigma) (no gradient where clamped at 0.99) and sigma is the conic form.
    """
    m, con, o = means2d[ids], conics[ids], opacities[ids]  # [g, L, 2], [g, L, 3], [g, L]
    dx = xs[:, None, :] - m[:, :, 0, None]  # [g, L, S]
    dy = ys[:, None, :] - m[:, :, 1, None]
    a, b, c = con[:, :, 0, None], con[:, :, 1, None], con[:, :, 2, None]
    sigma = (dx * (0.5 * a)).mul_(dx)
    sigma.add_((dy * (0.5 * c)).mul_(dy)).addcmul_(dx * b, dy)
    e = sigma.clamp_min_(0).neg_().exp_()  # sigma >= 0 on every blended entry
    alpha_raw = e * o[:, :, None]
    alpha = alpha_raw.clamp_max(ALPHA_MAX)
    blended = w > 0
    gww = gw * w
    tail = torch.cumsum(gww, dim=1).neg_().add_(gww.sum(dim=1, keepdim=True))
    tail.add_(gT_Tf[:, None])  # sum_{i>k} gw_i w_i + gT T_final
    g_alpha = (gw * w).div_(alpha.clamp_min(torch.finfo(alpha.dtype).tiny))
    g_alpha.sub_(tail.div_(1.0 - alpha))
    g_alpha.mul_(blended & (alpha_raw <= ALPHA_MAX))
    g_o = (g_alpha * e).sum(dim=2)
    g_sigma = g_alpha.mul_(alpha_raw).neg_()  # d alpha / d sigma = -o exp(-sigma)
    gdx, gdy = g_sigma * dx, g_sigma * dy
    g_con = torch.stack([0.5 * (gdx * dx).sum(2), (gdx * dy).sum(2), 0.5 * (gdy * dy).sum(2)], -1)
    sx, sy = gdx.sum(2), gdy.sum(2)  # d sigma / d mean = -(a dx + b dy, b dx + c dy)
    g_m = -torch.stack([a[..., 0] * sx + b[..., 0] * sy, b[..., 0] * sx + c[..., 0] * sy], -1)
    return g_m, g_con, g_o


class _BlockWeights(Function):
    """(means2d, conics, opacities) -> (W values [sum g L, S], T_final [P]); layout via holder."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, xy, blocks, holder):  # noqa: D102
        layout, values, T = select_blocks(means2d, conics, opacities, xy, blocks)
        holder["layout"] = layout
        ctx.layout = layout
        ctx.save_for_backward(means2d, conics, opacities, xy, values, T)
        return values, T

    @staticmethod
    def backward(ctx, g_values, g_T):  # noqa: D102
        means2d, conics, opacities, xy, values, T = ctx.saved_tensors
        lay: BlockLayout = ctx.layout
        g_m, g_con, g_o = torch.zeros_like(means2d), torch.zeros_like(conics), torch.zeros_like(opacities)
        if g_values is None:
            g_values = torch.zeros_like(values)
        gT_Tf = torch.zeros_like(T) if g_T is None else g_T * T
        gT_Tf = torch.cat([gT_Tf, gT_Tf.new_zeros(1)])
        xs = torch.cat([xy[:, 0], xy.new_zeros(1)])
        ys = torch.cat([xy[:, 1], xy.new_zeros(1)])
        rows = torch.where(lay.rows < 0, xs.shape[0] - 1, lay.rows)
        r0 = k0 = 0
        for g, L in lay.groups:
            ids = lay.ids[r0 : r0 + g * L].view(g, L)
            sl = slice(r0, r0 + g * L)
            br = rows[k0 : k0 + g]
            gm, gc, go = _group_backward(
                means2d, conics, opacities, xs[br], ys[br], ids, values[sl].view(g, L, -1),
                g_values[sl].view(g, L, -1), gT_Tf[br])
            g_m.index_add_(0, ids.reshape(-1), gm.reshape(-1, 2))
            g_con.index_add_(0, ids.reshape(-1), gc.reshape(-1, 3))
            g_o.index_add_(0, ids.reshape(-1), go.reshape(-1))
            r0, k0 = r0 + g * L, k0 + g
        return g_m, g_con, g_o, None, None, None


def block_weights(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int, height: int,
    tile_size: int | None = None,
) -> tuple[BlockLayout, Tensor, Tensor]:
    """Differentiable blocked weights of ``pixels``: (layout, values, T_final [P])."""
    blocks = bin_to_blocks(proj, opacities, pixels, width, height, tile_size)
    xy = pixel_centres(pixels, width, proj.means2d.dtype)
    holder: dict = {}
    values, T = _BlockWeights.apply(
        proj.means2d, proj.conics, opacities.to(proj.means2d.dtype), xy, blocks, holder)
    return holder["layout"], values, T
