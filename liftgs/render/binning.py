"""Binning (no grad): pixels -> blocks, and per screen tile the Gaussians that may reach it.

A block is a group of at most ``S`` rendered pixels inside one ``TILE`` x ``TILE`` screen tile
(the whole tile when rendering a full image, a few pixels when rendering a sparse subset).
Each tile gets the depth-ordered list of Gaussians whose conservative extent box reaches
one of its pixel centres — gsplat's tile intersection. The extent box is exact for the
alpha >= 1/255 rule, so the rendered image does not depend on ``TILE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.render.projection import Projection, opacity_extent

TILE = 8  # screen tile side in pixels


@dataclass
class Blocks:
    """Pixel blocks and tile lists. ``rows`` index into the rendered ``pixels`` (-1 = pad)."""

    rows: Tensor  # [B, S] long
    tile: Tensor  # [B] long, screen tile of each block
    list_ptr: Tensor  # [num_tiles + 1] long, CSR over screen tiles
    list_ids: Tensor  # [I] long, Gaussian ids, front to back within a tile

    @property
    def num_blocks(self) -> int:
        return int(self.rows.shape[0])


def group_pixels(pixels: Tensor, width: int, tile_size: int) -> tuple[Tensor, Tensor]:
    """Blocks of rendered pixels: (rows [B, S], tile [B]).

    Full tiles become one block (also at a ragged image border); a sparse subset is cut into
    blocks of about the mean number of chosen pixels per occupied tile, so padding stays small
    either way.
    """
    dev = pixels.device
    tiles_x = (width + tile_size - 1) // tile_size
    tile = (pixels // width // tile_size) * tiles_x + (pixels % width) // tile_size  # [P]
    order = torch.sort(tile, stable=True).indices
    uniq, counts = torch.unique_consecutive(tile[order], return_counts=True)
    if uniq.numel() == 0:
        return torch.zeros(0, 1, dtype=torch.long, device=dev), uniq
    mean, most = float(counts.double().mean()), int(counts.max())
    S = most if 2 * mean >= most else math.ceil(mean)  # whole tiles unless very uneven
    rank = torch.arange(order.numel(), device=dev)
    rank -= torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    per_tile = (counts + S - 1) // S
    first_block = torch.cumsum(per_tile, 0) - per_tile
    block = torch.repeat_interleave(first_block, counts) + rank // S
    rows = torch.full((int(per_tile.sum()), S), -1, dtype=torch.long, device=dev)
    rows[block, rank % S] = order
    return rows, torch.repeat_interleave(uniq, per_tile)


def _ellipse_misses_rect(
    uv: Tensor, conic: Tensor, r2: Tensor, lo: Tensor, hi: Tensor
) -> Tensor:
    """True where d^T conic d > r2 for every point of the rectangle [lo, hi] (no grad).

    The minimum of this convex quadratic over a box is 0 when the centre is inside, else
    it lies on an edge, where it is a 1-D quadratic minimised by clamping its vertex.
    """
    a, b, c = conic.unbind(-1)
    d_lo, d_hi = lo - uv, hi - uv  # [M, 2] box corners relative to the centre
    inside = ((d_lo <= 0) & (d_hi >= 0)).all(-1)
    best = torch.full_like(a, float("inf"))
    for dx in (d_lo[:, 0], d_hi[:, 0]):  # vertical edges: vary dy
        dy = (-b * dx / c).clamp(d_lo[:, 1], d_hi[:, 1])
        best = torch.minimum(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    for dy in (d_lo[:, 1], d_hi[:, 1]):  # horizontal edges: vary dx
        dx = (-b * dy / a).clamp(d_lo[:, 0], d_hi[:, 0])
        best = torch.minimum(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    return ~inside & (best > r2 * (1 + 1e-5) + 1e-5)


def depth_sorted_boxes(
    proj: Projection, opacities: Tensor, width: int, height: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Valid Gaussians front to back with their pixel boxes (no grad).

    Returns (g [Q] ids sorted by camera z, stable: ties keep index order; box [Q, 4] long
    x0, x1, y0, y1 clamped to the image; uv [Q, 2]; r2 [Q] squared opacity extent).
    """
    g = torch.nonzero(proj.valid).squeeze(1)
    g = g[torch.sort(proj.depths.detach()[g], stable=True).indices]
    uv, ext = proj.means2d.detach()[g], proj.extents[g]
    margin = 1e-3  # px; the box is exact, the margin only guards rounding
    x0 = torch.ceil(uv[:, 0] - ext[:, 0] - 0.5 - margin).clamp(0, width - 1).long()
    x1 = torch.floor(uv[:, 0] + ext[:, 0] - 0.5 + margin).clamp(0, width - 1).long()
    y0 = torch.ceil(uv[:, 1] - ext[:, 1] - 0.5 - margin).clamp(0, height - 1).long()
    y1 = torch.floor(uv[:, 1] + ext[:, 1] - 0.5 + margin).clamp(0, height - 1).long()
    r2 = opacity_extent(opacities.detach()[g].to(uv.dtype)).square()
    return g, torch.stack([x0, x1, y0, y1], -1), uv, r2


def tile_lists(
    proj: Projection, opacities: Tensor, width: int, height: int, tile_size: int,
    occupied: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per screen tile, the Gaussians that may reach it, front to back: (list_ptr, list_ids).

    Gaussians are sorted by camera z (stable: ties keep index order) and each one is
    enumerated over the tiles its pixel box covers; a stable sort by tile keeps depth order.
    ``occupied`` [num_tiles] bool limits the lists to tiles holding rendered pixels.
    """
    dev = proj.means2d.device
    tiles_x, tiles_y = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    g, box, uv, r2 = depth_sorted_boxes(proj, opacities, width, height)
    x0, x1, y0, y1 = box.unbind(1)
    tx0, ty0 = x0 // tile_size, y0 // tile_size
    ntx = x1 // tile_size - tx0 + 1
    n = ntx * (y1 // tile_size - ty0 + 1)
    gi = torch.repeat_interleave(torch.arange(g.numel(), device=dev), n)
    first = torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    local = torch.arange(gi.numel(), device=dev) - first
    ty, tx = ty0[gi] + local // ntx[gi], tx0[gi] + local % ntx[gi]
    if occupied is not None:
        keep = occupied[ty * tiles_x + tx]
        gi, ty, tx = gi[keep], ty[keep], tx[keep]
    # drop tiles that the box touches but the alpha >= 1/255 ellipse does not (box corners)
    lo = torch.stack([tx, ty], -1).to(uv.dtype) * tile_size + 0.5
    hi = torch.minimum(lo + (tile_size - 1), lo.new_tensor([width - 0.5, height - 0.5]))
    miss = _ellipse_misses_rect(uv[gi], proj.conics.detach()[g][gi], r2[gi], lo, hi)
    gi, t = gi[~miss], (ty * tiles_x + tx)[~miss]
    by_tile = torch.sort(t, stable=True).indices  # stable: depth order kept inside a tile
    list_ids = g[gi[by_tile]]
    list_ptr = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.long, device=dev)
    list_ptr[1:] = torch.cumsum(torch.bincount(t, minlength=tiles_x * tiles_y), 0)
    return list_ptr, list_ids


@torch.no_grad()
def bin_to_blocks(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int, height: int,
    tile_size: int | None = None,
) -> Blocks:
    """Blocks of ``pixels`` [P] and the tile lists they read (``tile_size`` default TILE)."""
    tile_size = TILE if tile_size is None else int(tile_size)
    rows, tile = group_pixels(pixels, width, tile_size)
    tiles_x, tiles_y = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    occupied = None
    if tile.numel() < tiles_x * tiles_y:  # a pixel subset: list only the tiles it touches
        occupied = torch.zeros(tiles_x * tiles_y, dtype=torch.bool, device=pixels.device)
        occupied[tile] = True
    list_ptr, list_ids = tile_lists(proj, opacities, width, height, tile_size, occupied)
    return Blocks(rows=rows, tile=tile, list_ptr=list_ptr, list_ids=list_ids)
