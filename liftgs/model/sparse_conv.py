"""Submanifold sparse 3D convolution in plain torch (gather -> matmul -> index_add).

This is the computation spconv's CPU path performs (rulebook of neighbour pairs per kernel
offset), written with torch ops so that it is bit-reproducible with several threads:
spconv 2.3.8's CPU path gave run-to-run differences with 2 threads (breaking exact resume)
and, on some dense voxel sets, results that disagree with a dense ``conv3d`` reference.
``tests/test_model_sparse_conv.py`` compares values and gradients with dense ``conv3d``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

OFFSETS_3 = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)  # [27, 3] (x, y, z)


@dataclass
class Rulebook:
    """Neighbour pairs of a voxel set for a 3x3x3 kernel, sorted by kernel offset:
    for offset k, ``out[dst[s:e]] += in[src[s:e]] @ W[k]`` with ``(s, e) = bounds[k]``."""

    num_voxels: int
    src: Tensor  # [n_pairs] int64
    dst: Tensor  # [n_pairs] int64
    bounds: list[tuple[int, int]]  # 27 slices of src / dst


def build_rulebook(coords: Tensor) -> Rulebook:
    """Pairs with coords[src] = coords[dst] + offset_k in the same scene; ``coords`` [V, 4] (b, x, y, z)."""
    coords = coords.long()
    V = coords.shape[0]
    device = coords.device
    xyz = coords[:, 1:] + 1  # room for the -1 offset
    ext = (xyz.max(0).values + 2) if V else torch.ones(3, dtype=torch.long, device=device)
    X, Y, Z = (int(e) for e in ext)

    def encode(p: Tensor) -> Tensor:
        return ((coords[:, 0] * X + p[:, 0]) * Y + p[:, 1]) * Z + p[:, 2]

    sorted_keys, order = torch.sort(encode(xyz))
    src, dst, bounds, start = [], [], [], 0
    for d in OFFSETS_3.to(device):
        nb = encode(xyz + d)
        pos = torch.searchsorted(sorted_keys, nb).clamp_max(max(V - 1, 0))
        found = sorted_keys[pos] == nb if V else torch.zeros(0, dtype=torch.bool, device=device)
        dst.append(torch.nonzero(found).flatten())
        src.append(order[pos[found]])
        bounds.append((start, start + dst[-1].numel()))
        start += dst[-1].numel()
    return Rulebook(V, torch.cat(src), torch.cat(dst), bounds)


def submanifold_conv(features: Tensor, rulebook: Rulebook, weight: Tensor) -> Tensor:
    """features [V, Cin], weight [27, Cin, Cout] -> [V, Cout]; output voxels = input voxels.

    One gather, one matmul per kernel offset, one index_add (all deterministic on CPU).
    """
    gathered = torch.index_select(features, 0, rulebook.src)  # [n_pairs, Cin]
    parts = [gathered[s:e] @ weight[k] for k, (s, e) in enumerate(rulebook.bounds) if e > s]
    out = features.new_zeros(rulebook.num_voxels, weight.shape[2])
    if parts:
        out = out.index_add(0, rulebook.dst, torch.cat(parts))
    return out


class SubMConv3d(nn.Module):
    """3x3x3 submanifold convolution without bias; weight [27, Cin, Cout] (offsets (dx, dy, dz)
    in {-1, 0, 1}^3, dx slowest; the same layout as spconv's [Cout, 3, 3, 3, Cin] permuted)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(27, in_channels, out_channels))
        bound = math.sqrt(3.0 / (27 * in_channels))  # variance 1 / fan_in
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, features: Tensor, rulebook: Rulebook) -> Tensor:
        return submanifold_conv(features, rulebook, self.weight)
