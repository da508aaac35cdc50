"""Cluster-mean pooling of per-Gaussian latents into m scene tokens L^.

GenSplat summary, Key Designs 1, stage I: "Features are also aggregated via cluster-mean
pooling based on geometric position and semantics into L^ = {l^_k}_{k=1}^m". Stage II's
instance decoder initialises its queries from L^ and attends to it.

Clusters: m seeds by farthest-point sampling on the Gaussian centres, then k-means-style
rounds with the distance ``||x - c|| / sigma + beta * (1 - cos(l, c_l))`` between a Gaussian
(centre x, latent l) and a cluster (centroid c, mean latent direction c_l). The assignment
is computed without gradient; the tokens (each cluster's mean latent) carry the gradient to
the latents of its members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from liftgs.modules.voxelize import scatter_mean

ASSIGN_CHUNK = 1024  # Gaussians per block of the [N, m] distance matrix (fits in cache for m = 256)


@dataclass
class PooledTokens:
    """m cluster tokens of one scene. Empty clusters are kept (``valid`` False) with a zero
    token at the cluster's last centroid, so m is fixed."""

    tokens: Tensor  # [m, C] mean latent of each cluster (differentiable in the latents)
    xyz: Tensor  # [m, 3] centroid of each cluster's Gaussian centres (no gradient)
    assignment: Tensor  # [N] int64 cluster of every Gaussian
    valid: Tensor  # [m] bool, False = empty cluster

    @property
    def counts(self) -> Tensor:
        """[m] Gaussians per cluster."""
        return torch.bincount(self.assignment, minlength=self.tokens.shape[0])

    def scene_centre(self) -> Tensor:
        """[3] mean of the pooled Gaussians' centres (cluster centroids weighted by size)."""
        counts = self.counts.to(self.xyz.dtype)
        return (self.xyz * counts[:, None]).sum(0) / counts.sum().clamp_min(1.0)


def farthest_points(xyz: Tensor, m: int) -> Tensor:
    """Indices [m] of farthest-point sampling over ``xyz`` [N, 3], starting at point 0 (ties
    go to the lower index; repeats once every point is chosen): the choice of
    :func:`liftgs.modules.decoder.farthest_tokens` on one unpadded scene. On the CPU a compiled
    loop (:mod:`liftgs.modules.fps_kernel`), elsewhere four in-place torch ops per point."""
    x = xyz.detach().float()
    if x.device.type == "cpu":
        from liftgs.modules.fps_kernel import farthest_point_indices

        return torch.from_numpy(farthest_point_indices(x.contiguous().numpy(), int(m)))
    return _farthest_points_torch(x, m)


def _farthest_points_torch(x: Tensor, m: int) -> Tensor:
    """:func:`farthest_points` in torch ops (any device)."""
    with torch.no_grad():
        xt = x.T.contiguous()  # [3, N]
        dist = torch.full((xt.shape[1],), torch.finfo(torch.float32).max, device=xt.device)
        step = torch.empty_like(xt)
        out = torch.zeros(m, dtype=torch.long, device=xt.device)
        cur = torch.zeros((), dtype=torch.long, device=xt.device)
        for j in range(m):
            out[j] = cur
            torch.sub(xt, xt.index_select(1, cur.reshape(1)), out=step)
            torch.minimum(dist, step.square_().sum(0), out=dist)
            cur = dist.argmax()
    return out


def assign_clusters(means: Tensor, directions: Tensor, centroids: Tensor, centroid_dirs: Tensor, sigma: float,
                    beta: float, chunk: int = ASSIGN_CHUNK) -> Tensor:
    """Cluster [N] of every Gaussian: argmin over clusters of ``||x - c|| / sigma + beta * (1 -
    <d, c_d>)`` with unit latent directions ``directions`` [N, C] and ``centroid_dirs`` [m, C]
    (ties go to the lower cluster). Computed ``chunk`` Gaussians at a time, without gradient:
    ``||x - c||^2 = |x|^2 - 2 x.c + |c|^2`` and the cosines as matrix products into one
    [chunk, m] buffer (positions are best centred first: the expansion loses precision far
    from the origin)."""
    out = torch.empty(means.shape[0], dtype=torch.long, device=means.device)
    with torch.no_grad():
        c2 = centroids.square().sum(1)
        cross = (-2.0 * centroids).T.contiguous()  # [3, m]
        semantic = (-beta * centroid_dirs).T.contiguous()  # [C, m]
        for s in range(0, means.shape[0], chunk):
            x = means[s:s + chunk]
            dist = torch.addmm(c2, x, cross).add_(x.square().sum(1, keepdim=True))
            dist.clamp_(min=0.0).sqrt_().mul_(1.0 / sigma)
            if beta:
                dist.addmm_(directions[s:s + chunk], semantic)  # + beta * (1 - cos): the 1 is common
            out[s:s + chunk] = dist.argmin(1)
    return out


def cluster_mean_pool(latents: Tensor, means: Tensor, num_tokens: int, iters: int, sigma: float,
                      beta: float, chunk: int = ASSIGN_CHUNK) -> PooledTokens:
    """Pool latents [N, C] of Gaussians at ``means`` [N, 3] into ``num_tokens`` cluster means.

    Seeds: farthest-point sampling on the centres, starting at Gaussian 0 (deterministic
    given the inputs; with fewer Gaussians than tokens, seeds repeat and the repeats stay
    empty). Round 0 assigns every Gaussian to its nearest seed (seed latent directions as
    c_l); each of ``iters`` rounds then moves every non-empty cluster to the mean centre and
    the normalised mean latent direction of its members and reassigns."""
    m = int(num_tokens)
    # the clustering is a discrete decision: float32 even under mixed precision
    with torch.no_grad(), torch.autocast(means.device.type, enabled=False):
        origin = means.detach().float().mean(0)
        x = means.detach().float() - origin  # centred: see assign_clusters
        d = F.normalize(latents.detach().float(), dim=1)
        seeds = farthest_points(x, m)
        centroids, centroid_dirs = x[seeds], d[seeds]
        assignment = assign_clusters(x, d, centroids, centroid_dirs, sigma, beta, chunk)
        for _ in range(int(iters)):
            centroids, centroid_dirs = _update(x, d, assignment, centroids, centroid_dirs)
            assignment = assign_clusters(x, d, centroids, centroid_dirs, sigma, beta, chunk)
        counts = torch.bincount(assignment, minlength=m)
        valid = counts > 0
        xyz = (torch.where(valid[:, None], scatter_mean(x, assignment, m), centroids) + origin).to(means.dtype)
    tokens = scatter_mean(latents, assignment, m)
    return PooledTokens(tokens=tokens, xyz=xyz, assignment=assignment, valid=valid)


def _update(x: Tensor, d: Tensor, assignment: Tensor, centroids: Tensor,
            centroid_dirs: Tensor) -> tuple[Tensor, Tensor]:
    """k-means step: members' mean centre and normalised mean direction; empty clusters stay."""
    m = centroids.shape[0]
    keep = (torch.bincount(assignment, minlength=m) == 0)[:, None]
    new_c = scatter_mean(x, assignment, m)
    new_d = F.normalize(scatter_mean(d, assignment, m), dim=1)
    return torch.where(keep, centroids, new_c), torch.where(keep, centroid_dirs, new_d)
