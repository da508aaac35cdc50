"""Voxelisation of a batch of point clouds (flat tensor + offsets, Pointcept style).

The point encoder runs on 5 cm voxels (paper Sec 3.3.3, appendix A.1) while the Gaussian head
keeps one Gaussian per input point (Sec 3.3.2), so voxelisation also returns the map from each
point back to its voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class VoxelBatch:
    """Voxels of B scenes; voxels are grouped by scene (scene 0 first)."""

    coords: Tensor  # [V, 4] int32 (batch, x, y, z), each scene's grid starts at 0
    features: Tensor  # [V, 6] mean over the voxel's points of (centred xyz, rgb - 0.5)
    centers: Tensor  # [V, 3] mean xyz (world) of the voxel's points
    point_to_voxel: Tensor  # [P] int64
    voxel_offsets: Tensor  # [B] int64, cumulative end index of each scene's voxels
    batch_size: int


def batch_index(offsets: Tensor, total: int) -> Tensor:
    """Scene index [P] of every element from cumulative end offsets [B]."""
    starts = torch.cat([offsets.new_zeros(1), offsets[:-1]])
    counts = offsets - starts
    if (counts < 0).any() or int(offsets[-1]) != total:
        raise ValueError(
            f"offsets must be non-decreasing cumulative end indices ending at {total}, got {offsets.tolist()}"
        )
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), counts)


def scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of ``values`` [N, C] grouped by ``index`` [N] into ``size`` rows (empty rows -> 0)."""
    out = values.new_zeros(size, values.shape[1]).index_add_(0, index, values)
    count = values.new_zeros(size).index_add_(0, index, values.new_ones(index.shape[0]))
    return out / count.clamp_min(1.0)[:, None]


def group_cells(cells: Tensor, batch: Tensor, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Unique (batch, cell) pairs sorted by batch then cell.

    ``cells`` [N, 3] int64 non-negative, ``batch`` [N]. Returns ``unique`` [U, 4] int64
    (batch, x, y, z), ``inverse`` [N] and ``group_offsets`` [B] (cumulative ends per scene).
    """
    extent = cells.max(0).values + 1 if cells.numel() else cells.new_ones(3)
    X, Y, Z = (int(e) for e in extent)
    key = ((batch * X + cells[:, 0]) * Y + cells[:, 1]) * Z + cells[:, 2]
    ukey, inverse = torch.unique(key, sorted=True, return_inverse=True)
    z = ukey % Z
    y = (ukey // Z) % Y
    x = (ukey // (Z * Y)) % X
    b = ukey // (Z * Y * X)
    unique = torch.stack([b, x, y, z], dim=1)
    group_offsets = torch.cumsum(torch.bincount(b, minlength=batch_size), 0)
    return unique, inverse, group_offsets


def voxelize(points: Tensor, colors: Tensor, offsets: Tensor, voxel_size: float) -> VoxelBatch:
    """Voxels of side ``voxel_size`` per scene: coords = floor(points / voxel_size) - scene min.

    Features average the points' centred xyz (scene mean removed, so a translated scene gives
    the same features up to the grid phase) and colours.
    """
    P = points.shape[0]
    B = int(offsets.shape[0])
    batch = batch_index(offsets, P)
    grid = torch.floor(points.detach() / voxel_size).long()  # [P, 3]
    big = torch.iinfo(torch.int64).max
    gmin = torch.full((B, 3), big, dtype=torch.long, device=points.device)
    gmin = gmin.scatter_reduce(0, batch[:, None].expand(-1, 3), grid, reduce="amin")
    cells = grid - gmin[batch]
    unique, inverse, voxel_offsets = group_cells(cells, batch, B)
    scene_mean = scatter_mean(points, batch, B)  # [B, 3]
    point_feats = torch.cat([points - torch.index_select(scene_mean, 0, batch), colors - 0.5], dim=1)
    V = unique.shape[0]
    features = scatter_mean(point_feats, inverse, V)
    centers = scatter_mean(points, inverse, V)
    return VoxelBatch(
        coords=unique.int(), features=features, centers=centers, point_to_voxel=inverse,
        voxel_offsets=voxel_offsets, batch_size=B,
    )
