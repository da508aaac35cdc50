"""Projection of 3D Gaussians to screen-space ellipses (EWA splatting), gsplat conventions.

Every rendered pixel value is ``W @ attributes`` where ``W`` depends only on the geometry
computed here (paper Sec. 3.2; gsplat's ``fully_fused_projection``). Differentiable w.r.t.
means, quats and scales; culling decisions and screen extents carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NEAR_PLANE = 0.01  # gsplat's default: Gaussians with camera z <= near are culled
EPS_2D = 0.3  # px^2 low-pass added to every 2D covariance (3DGS / gsplat)
ALPHA_MIN = 1.0 / 255.0  # alpha below this is skipped (gsplat)
ALPHA_MAX = 0.99  # alpha is clamped to this (3DGS)
T_MIN = 1e-4  # a Gaussian that would take transmittance to <= T_MIN ends the pixel's list
EXTENT_CAP = 3.33  # screen extent cap in standard deviations (gsplat)
FOV_WIDEN = 0.3  # the EWA Jacobian clamps x/z, y/z to the field of view widened by 30 %


@dataclass
class Projection:
    """Screen-space Gaussians for one camera. Culled Gaussians have ``valid = False``.

    ``means2d`` [N, 2] px, ``conics`` [N, 3] (a, b, c) of the inverse 2D covariance
    ``[[a, b], [b, c]]``, ``depths`` [N] camera z, ``extents`` [N, 2] half-widths in px of the
    box outside which alpha < 1/255 (no grad), ``valid`` [N] bool.
    """

    means2d: Tensor  # [N, 2]
    conics: Tensor  # [N, 3]
    depths: Tensor  # [N]
    extents: Tensor  # [N, 2], no grad
    valid: Tensor  # [N] bool


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] from wxyz quaternions [N, 4] (normalised here).

    A zero quaternion normalises to zero, which this formula maps to the identity, with zero
    gradient — a safe answer for an untrained network output.
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances [N, 3, 3] = R S S^T R^T from quats [N, 4] and scales [N, 3]."""
    M = quat_to_rotmat(quats) * scales[:, None, :]  # R @ diag(s)
    return M @ M.transpose(-1, -2)


def opacity_extent(opacities: Tensor) -> Tensor:
    """Radius in standard deviations beyond which o*exp(-sigma) < 1/255 (no grad).

    sigma = 0.5 d^T Sigma^-1 d, so alpha >= 1/255 needs d^T Sigma^-1 d <= 2 ln(255 o); the
    box of that ellipse has half-widths r*sqrt(Sigma_xx), r*sqrt(Sigma_yy). Capped at 3.33
    as in gsplat; for o < 1 the cap never binds, so the box is exact and the image does not
    depend on any tiling.
    """
    o = opacities.detach().clamp_min(ALPHA_MIN)
    return torch.sqrt(2.0 * torch.log(o / ALPHA_MIN)).clamp_max(EXTENT_CAP)


def _cov2d_terms(quats, scales, zs, tx, ty, fx, fy, Rcw) -> tuple[Tensor, Tensor, Tensor]:
    """Entries a, b, c [N] of the 2D covariance J Rcw Sigma Rcw^T J^T (before the low-pass).

    Written as B B^T with B = J Rcw R S [2, 3] per Gaussian, one contiguous [N] tensor per
    entry: on CPU, ~100 elementwise ops on [N] vectors are several times faster (forward
    and backward) than batched 3x3 matmuls and reductions over small middle dimensions.
    """
    w, x, y, z = F.normalize(quats, dim=-1).t().contiguous().unbind(0)
    sx, sy, sz = scales.t().contiguous().unbind(0)
    R = ((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
         (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
         (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)))
    M = [(r[0] * sx, r[1] * sy, r[2] * sz) for r in R]  # R S, rows
    iz = 1.0 / zs
    rows = []  # B = (J Rcw) M; J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
    for f, t, axis in ((fx, tx, 0), (fy, ty, 1)):
        j0, j2 = f * iz, -(f * t) * (iz * iz)
        jr = [j0 * Rcw[axis, k] + j2 * Rcw[2, k] for k in range(3)]  # row of J Rcw
        rows.append([jr[0] * M[0][m] + jr[1] * M[1][m] + jr[2] * M[2][m] for m in range(3)])
    B0, B1 = rows
    a = B0[0] * B0[0] + B0[1] * B0[1] + B0[2] * B0[2]
    b = B0[0] * B1[0] + B0[1] * B1[1] + B0[2] * B1[2]
    c = B1[0] * B1[0] + B1[1] * B1[1] + B1[2] * B1[2]
    return a, b, c


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, any norm
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] in (0, 1)
    viewmat: Tensor,  # [4, 4] world -> camera
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    near: float = NEAR_PLANE,
    eps2d: float = EPS_2D,
) -> Projection:
    """EWA projection with gsplat's clamp, low-pass, det clamp and culling."""
    viewmat = viewmat.to(means)
    K = K.to(means)
    Rcw, tcw = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ Rcw.T + tcw  # [N, 3] camera coordinates
    z = p[:, 2]
    in_front = z > near
    zs = torch.where(in_front, z, torch.ones_like(z))  # safe divisor for culled Gaussians
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = fx * p[:, 0] / zs + cx
    v = fy * p[:, 1] / zs + cy

    # Jacobian of the perspective map at a point clamped to the widened FOV: far off-axis
    # Gaussians would otherwise get huge, unstable 2D covariances (gsplat persp_proj).
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp = ((width - cx) / fx + FOV_WIDEN * tan_x).detach()
    lim_xn = (cx / fx + FOV_WIDEN * tan_x).detach()
    lim_yp = ((height - cy) / fy + FOV_WIDEN * tan_y).detach()
    lim_yn = (cy / fy + FOV_WIDEN * tan_y).detach()
    tx = zs * torch.clamp(p[:, 0] / zs, min=-lim_xn, max=lim_xp)
    ty = zs * torch.clamp(p[:, 1] / zs, min=-lim_yn, max=lim_yp)
    a, b, c = _cov2d_terms(quats, scales, zs, tx, ty, fx, fy, Rcw)
    a, c = a + eps2d, c + eps2d
    det_raw = a * c - b * b
    det = det_raw.clamp_min(1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        r = opacity_extent(opacities)
        ext = torch.stack([r * a.clamp_min(0).sqrt(), r * c.clamp_min(0).sqrt()], dim=-1)
        finite = torch.isfinite(conics).all(-1) & torch.isfinite(ext).all(-1)
        finite &= torch.isfinite(u) & torch.isfinite(v)
        valid = in_front & (det_raw > 0) & finite & (opacities.detach() >= ALPHA_MIN)
        # pixel centres lie in [0.5, W - 0.5] x [0.5, H - 0.5]
        valid &= (u + ext[:, 0] >= 0.5) & (u - ext[:, 0] <= width - 0.5)
        valid &= (v + ext[:, 1] >= 0.5) & (v - ext[:, 1] <= height - 0.5)
        ext = torch.where(valid[:, None], ext, torch.zeros_like(ext))
    means2d = torch.stack([u, v], dim=-1)
    return Projection(means2d=means2d, conics=conics, depths=z, extents=ext, valid=valid)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def float32(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """The tensors with half / bfloat16 ones cast to float32 (others unchanged). The renderer
    always runs in float32 or float64: under mixed precision (``torch.autocast``) a model's
    outputs may arrive in bfloat16, and its callers render them inside
    ``torch.autocast(..., enabled=False)``."""
    return tuple(t.float() if t is not None and t.dtype in LOW_PRECISION else t for t in tensors)


def pixel_centres(pixels: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """Centres [P, 2] (x + 0.5, y + 0.5) of flat pixel indices y * W + x."""
    return torch.stack([(pixels % width).to(dtype) + 0.5, (pixels // width).to(dtype) + 0.5], -1)


def gaussian_sigma(d: Tensor, conics: Tensor) -> Tensor:
    """sigma = 0.5 (a dx^2 + c dy^2) + b dx dy for offsets d [..., 2], conics [..., 3]."""
    dx, dy = d[..., 0], d[..., 1]  # same operation order as the fast path's kernels
    return (dx * (0.5 * conics[..., 0])) * dx + (dy * (0.5 * conics[..., 2])) * dy + (
        dx * conics[..., 1]) * dy


__all__ = [
    "Projection", "project_gaussians", "quat_to_rotmat", "covariance_3d", "opacity_extent",
    "pixel_centres", "gaussian_sigma", "float32", "LOW_PRECISION", "NEAR_PLANE", "EPS_2D", "ALPHA_MIN", "ALPHA_MAX",
    "T_MIN", "EXTENT_CAP",
]
