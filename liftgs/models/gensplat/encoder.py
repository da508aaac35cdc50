"""GenSplat's Gaussian encoder E_g: one semantic latent per 3D Gaussian.

GenSplat summary, Key Designs 1, stage I (Semantic-level Alignment): "A standard
SparseConvUNet is used as the Gaussian encoder E_g to encode each Gaussian G_j into semantic
features l_j = E_g(G_j)". The Gaussians' centres are voxelised, their attributes averaged per
voxel, the sparse UNet of :mod:`liftgs.modules.sparse_unet` runs over the voxels, and every
Gaussian's latent is an MLP of its voxel's UNet feature and its own attributes, so Gaussians
sharing a voxel still get their own latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from liftgs.modules.sparse_unet import SparseUNet
from liftgs.modules.voxelize import scatter_mean, voxelize

if TYPE_CHECKING:
    from liftgs.io.splat_ply import SplatCloud

SH_C0 = 0.28209479177387814  # degree-0 spherical harmonic: colour = 0.5 + SH_C0 * DC
ATTRIBUTE_DIM = 14  # per-Gaussian attributes (GaussianEncoder.attributes)
VOXEL_INPUT_DIM = 17  # per-voxel UNet input (GaussianEncoder.voxel_inputs)
LOG_SCALE_RANGE = (-6.0, 3.0)  # log(scale / voxel size) is clamped to this range


@dataclass
class GaussianInput:
    """One scene's 3D Gaussians in activated form (torch tensors, one row per Gaussian).

    ``means`` [N, 3] metres, ``colors`` [N, 3] RGB in [0, 1] (from the SH DC term),
    ``opacities`` [N] in [0, 1], ``scales`` [N, 3] (activated: exp of the PLY's log scales),
    ``quats`` [N, 4] wxyz rotations, not necessarily normalised."""

    means: Tensor
    colors: Tensor
    opacities: Tensor
    scales: Tensor
    quats: Tensor

    @classmethod
    def from_splat(cls, cloud: "SplatCloud", device: str | torch.device = "cpu") -> "GaussianInput":
        """The Gaussians of a :class:`liftgs.io.splat_ply.SplatCloud` (the 3DGS
        parameterisation): colour = clip(0.5 + C0 * sh[:, 0], 0, 1), opacity = sigmoid of the
        logit, scale = exp of the log scale, the quaternion as stored."""
        sh = np.asarray(cloud.sh, dtype=np.float32)
        if sh.ndim != 3 or sh.shape[1] < 1 or sh.shape[2] != 3:
            raise ValueError(f"SplatCloud.sh must be [N, K, 3], got {list(sh.shape)}")

        def tensor(a) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

        colors = np.clip(0.5 + SH_C0 * sh[:, 0], 0.0, 1.0)
        g = cls(means=tensor(cloud.means), colors=tensor(colors),
                opacities=torch.sigmoid(tensor(cloud.opacity_logits).reshape(-1)),
                scales=torch.exp(tensor(cloud.log_scales)), quats=tensor(cloud.quats))
        g.check("SplatCloud")
        return g

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return len(self)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "GaussianInput":
        """A copy on ``device`` with float tensors of ``dtype`` (the same object's tensors when
        nothing changes)."""
        return GaussianInput(*(t.to(device=device, dtype=dtype) for t in
                               (self.means, self.colors, self.opacities, self.scales, self.quats)))

    def subset(self, index: Tensor) -> "GaussianInput":
        """The Gaussians at ``index`` (indices or a boolean mask)."""
        return GaussianInput(*(t[index] for t in (self.means, self.colors, self.opacities, self.scales,
                                                  self.quats)))

    def check(self, source: str = "GaussianInput") -> None:
        """One-line ValueError naming ``source`` and the field when a shape is wrong, there
        are no Gaussians, or a value is not finite."""
        N = self.means.shape[0] if isinstance(self.means, Tensor) and self.means.ndim == 2 else -1
        shapes = {"means": ((N, 3), "[N, 3]"), "colors": ((N, 3), "[N, 3]"), "opacities": ((N,), "[N]"),
                  "scales": ((N, 3), "[N, 3]"), "quats": ((N, 4), "[N, 4]")}
        for name, (shape, text) in shapes.items():
            t = getattr(self, name)
            if not isinstance(t, Tensor):
                raise ValueError(f"{source}: field {name!r} must be a torch tensor, got {type(t).__name__}")
            if tuple(t.shape) != shape or N < 1:
                raise ValueError(f"{source}: field {name!r} must be {text} with N = {max(N, 0)} Gaussians "
                                 f"(at least 1), got {list(t.shape)}")
            if not t.is_floating_point():
                raise ValueError(f"{source}: field {name!r} must be a float tensor, got {t.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{source}: field {name!r} holds non-finite values")


def canonical_quats(quats: Tensor) -> Tensor:
    """Unit quaternions [N, 4] (wxyz) with w >= 0: q and -q are the same rotation."""
    q = quats / quats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[:, :1] < 0, -q, q)


class GaussianEncoder(nn.Module):
    """E_g (GenSplat summary, Key Designs 1, stage I): Gaussians -> latents l_j [N, C].

    Per Gaussian, the attributes (:meth:`attributes`, 14 values) are its colour, opacity,
    log scale relative to the voxel size, canonical quaternion and centre offset within its
    voxel. Per voxel, the UNet input (:meth:`voxel_inputs`, 17 values) is the mean over its
    Gaussians of the scene-centred centre, the colour (as :func:`liftgs.modules.voxelize.voxelize`
    computes them) and the other attributes. The latent of Gaussian j is
    ``MLP([UNet feature of its voxel, attributes of j]).``"""

    def __init__(self, channels: tuple[int, ...], unet_out: int, hidden: int, latent_dim: int, voxel_size: float,
                 blocks: int = 1, stem_blocks: int | None = 0, fuse_kernel: int = 1):
        super().__init__()
        self.voxel_size = float(voxel_size)
        self.unet = SparseUNet(VOXEL_INPUT_DIM, channels, unet_out, blocks=blocks, stem_blocks=stem_blocks,
                               fuse_kernel=fuse_kernel)
        self.latent = nn.Sequential(nn.Linear(unet_out + ATTRIBUTE_DIM, hidden), nn.GELU(),
                                    nn.Linear(hidden, latent_dim))

    def attributes(self, g: GaussianInput) -> Tensor:
        """[N, 14]: colour - 0.5, opacity - 0.5, clamped log(scale / voxel size), canonical
        quaternion, centre offset from its voxel's centre in voxels (in [-0.5, 0.5))."""
        cells = g.means / self.voxel_size
        offset = cells - torch.floor(cells) - 0.5
        log_scale = torch.log(g.scales.clamp_min(1e-12) / self.voxel_size).clamp(*LOG_SCALE_RANGE)
        return torch.cat([g.colors - 0.5, g.opacities[:, None] - 0.5, log_scale, canonical_quats(g.quats), offset],
                         dim=1)

    def voxel_inputs(self, g: GaussianInput, attributes: Tensor):
        """The scene's voxels (:class:`liftgs.modules.voxelize.VoxelBatch`, one scene) and the
        UNet input per voxel [V, 17]."""
        offsets = torch.tensor([len(g)], dtype=torch.long, device=g.means.device)
        vox = voxelize(g.means, g.colors, offsets, self.voxel_size)  # features: centred xyz, rgb - 0.5
        rest = scatter_mean(attributes[:, 3:], vox.point_to_voxel, vox.coords.shape[0])
        return vox, torch.cat([vox.features, rest], dim=1)

    def forward(self, g: GaussianInput) -> Tensor:
        """Latents [N, C] of one scene's Gaussians (inputs already checked and cast)."""
        attributes = self.attributes(g)
        vox, inputs = self.voxel_inputs(g, attributes)
        feats = self.unet(inputs, vox.coords, 1)  # [V, unet_out]
        # index_select: its backward is a deterministic index_add (see LiftGS.encode)
        gathered = torch.index_select(feats, 0, vox.point_to_voxel)
        return self.latent(torch.cat([gathered, attributes], dim=1))
