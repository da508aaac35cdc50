"""Sparse 3D convolutional UNet point encoder (paper Sec 3.3.3, appendix A).

xyz + rgb of 5 cm voxels go through a U-shaped stack of 3x3x3 submanifold convolutions with
2x down / up sampling (kernel 2, stride 2) between levels — the SpUNet design of PonderV2 /
Pointcept — and come back as one feature vector per voxel, in input order. The convolutions
are plain torch (:mod:`liftgs.modules.sparse_conv`) so that training is bit-reproducible.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liftgs.modules.sparse_conv import Rulebook, SubMConv3d, build_rulebook
from liftgs.modules.voxelize import group_cells


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.02)


class ResidualBlock(nn.Module):
    """Two 3x3x3 submanifold convolutions with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.bn1 = SubMConv3d(channels, channels), _bn(channels)
        self.conv2, self.bn2 = SubMConv3d(channels, channels), _bn(channels)

    def forward(self, x: Tensor, rulebook: Rulebook) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x, rulebook)))
        return torch.relu(self.bn2(self.conv2(h, rulebook)) + x)


class VoxelDownsample(nn.Module):
    """Sparse convolution with kernel 2 and stride 2: each voxel feeds its parent (coords // 2)
    through the weight of its child slot (coords % 2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        nn.init.uniform_(self.weight, -(3.0 / (8 * in_channels)) ** 0.5, (3.0 / (8 * in_channels)) ** 0.5)

    def forward(self, features: Tensor, coords: Tensor, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """features [V, Cin], coords [V, 4] -> parent features [U, Cout], parent coords [U, 4],
        parent index [V], child slot [V]."""
        child = ((coords[:, 1:] % 2) * torch.tensor([4, 2, 1], device=coords.device)).sum(1)
        parents, inverse, _ = group_cells(coords[:, 1:] // 2, coords[:, 0], batch_size)
        contrib = per_slot_matmul(features, child, self.weight)
        out = contrib.new_zeros(parents.shape[0], contrib.shape[1]).index_add(0, inverse, contrib)
        return out, parents, inverse, child


class VoxelUpsample(nn.Module):
    """Transpose of :class:`VoxelDownsample`: each child reads its parent through its slot's weight."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        nn.init.uniform_(self.weight, -(3.0 / in_channels) ** 0.5, (3.0 / in_channels) ** 0.5)

    def forward(self, parent_features: Tensor, inverse: Tensor, child: Tensor) -> Tensor:
        return per_slot_matmul(torch.index_select(parent_features, 0, inverse), child, self.weight)


def per_slot_matmul(features: Tensor, slot: Tensor, weight: Tensor) -> Tensor:
    """out[i] = features[i] @ weight[slot[i]]: [V, Cin], [V], [S, Cin, Cout] -> [V, Cout]."""
    order = torch.argsort(slot, stable=True)
    counts = torch.bincount(slot, minlength=weight.shape[0]).tolist()
    chunks = torch.split(torch.index_select(features, 0, order), counts)  # split: cheap backward
    parts = [chunk @ weight[k] for k, chunk in enumerate(chunks) if chunk.shape[0]]
    out = features.new_zeros(features.shape[0], weight.shape[2])
    return out.index_copy(0, order, torch.cat(parts)) if parts else out


class SparseUNet(nn.Module):
    """U-Net over sparse voxels: stem, ``len(channels)-1`` down levels, mirrored up path.

    ``channels[0]`` is the stem width, ``channels[i]`` the width at stride ``2**i``. On the way
    up, the upsampled features and the skip are concatenated and fused by a 3x3x3 convolution
    (``fuse_kernel=3``, PonderV2 / Pointcept SpUNet) or a per-voxel linear map (``1``): the
    residual blocks after the fusion still mix neighbours, and at full resolution — where ~3/4
    of the voxels live — the 3x3x3 fusion was a quarter of the whole UNet's work.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], out_channels: int, blocks: int = 1,
                 stem_blocks: int | None = None, fuse_kernel: int = 3):
        super().__init__()
        L = len(channels) - 1
        self.num_levels = L
        self.stem, self.stem_bn = SubMConv3d(in_channels, channels[0]), _bn(channels[0])
        stem_blocks = blocks if stem_blocks is None else stem_blocks
        self.stem_blocks = nn.ModuleList(ResidualBlock(channels[0]) for _ in range(stem_blocks))
        self.down = nn.ModuleList(VoxelDownsample(channels[i - 1], channels[i]) for i in range(1, L + 1))
        self.down_bn = nn.ModuleList(_bn(channels[i]) for i in range(1, L + 1))
        self.down_blocks = nn.ModuleList(
            nn.ModuleList(ResidualBlock(channels[i]) for _ in range(blocks)) for i in range(1, L + 1))
        self.up = nn.ModuleList(VoxelUpsample(channels[i], channels[i - 1]) for i in range(1, L + 1))
        self.up_bn = nn.ModuleList(_bn(channels[i - 1]) for i in range(1, L + 1))
        if fuse_kernel not in (1, 3):
            raise ValueError(f"fuse_kernel must be 1 (per-voxel linear) or 3 (3x3x3 conv), got {fuse_kernel}")
        self.fuse_kernel = int(fuse_kernel)
        self.fuse = nn.ModuleList((SubMConv3d(2 * channels[i - 1], channels[i - 1]) if fuse_kernel == 3 else
                                   nn.Linear(2 * channels[i - 1], channels[i - 1], bias=False))
                                  for i in range(1, L + 1))
        self.fuse_bn = nn.ModuleList(_bn(channels[i - 1]) for i in range(1, L + 1))
        self.up_blocks = nn.ModuleList(
            nn.ModuleList(ResidualBlock(channels[i - 1]) for _ in range(blocks if i > 1 else stem_blocks))
            for i in range(1, L + 1))
        self.out = nn.Linear(channels[0], out_channels)

    def forward(self, features: Tensor, coords: Tensor, batch_size: int | None = None) -> Tensor:
        """``features`` [V, C_in], ``coords`` [V, 4] (batch, x, y, z) -> [V, out_channels]."""
        coords = coords.long()
        B = int(batch_size) if batch_size is not None else int(coords[:, 0].max()) + 1
        rulebooks = [build_rulebook(coords)]
        x = torch.relu(self.stem_bn(self.stem(features, rulebooks[0])))
        for block in self.stem_blocks:
            x = block(x, rulebooks[0])
        skips, links = [x], []
        for i in range(self.num_levels):
            x, coords, inverse, child = self.down[i](x, coords, B)
            x = torch.relu(self.down_bn[i](x))
            rulebooks.append(build_rulebook(coords))
            for block in self.down_blocks[i]:
                x = block(x, rulebooks[-1])
            skips.append(x)
            links.append((inverse, child))
        for i in reversed(range(self.num_levels)):
            up = torch.relu(self.up_bn[i](self.up[i](x, *links[i])))
            x = torch.cat([up, skips[i]], dim=1)
            x = self.fuse[i](x, rulebooks[i]) if self.fuse_kernel == 3 else self.fuse[i](x)
            x = torch.relu(self.fuse_bn[i](x))
            for block in self.up_blocks[i]:
                x = block(x, rulebooks[i])
        return self.out(x)
