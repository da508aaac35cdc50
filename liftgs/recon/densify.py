"""Gaussian parameters, their Adam state and 3DGS's adaptive density control.

The Gaussians are a dict of leaf tensors (``means`` [N, 3], ``sh_dc`` [N, 1, 3], ``sh_rest``
[N, K-1, 3], ``log_scales`` [N, 3], ``quats`` [N, 4] wxyz, ``opacity_logits`` [N]). When
Gaussians are added or removed, every parameter, its Adam moments and the densification
statistics change rows together: removed rows disappear, new rows start with zero moments
(3DGS's ``cat_tensors_to_optimizer`` / ``_prune_optimizer``), and each parameter keeps its Adam
step count.

Density control (3DGS, Kerbl et al. 2023, Sec. 5.2; gsplat ``DefaultStrategy``): the norm of
the view-space positional gradient is accumulated per visible Gaussian, in NDC units (the
pixel gradient times W/2 and H/2, as gsplat normalises it). Every ``densify_every`` steps,
Gaussians whose mean gradient exceeds the threshold are cloned when small (max scale <=
``percent_dense`` x extent) or split when large (two samples drawn from the Gaussian, scales /
1.6, the original removed); then Gaussians with opacity < ``min_opacity``, larger than
``max_world_size`` x extent, or (after the first opacity reset) wider on screen than
``max_screen_size`` of the image are pruned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.render.projection import quat_to_rotmat

__all__ = ["PARAM_NAMES", "Adam", "DensifyStats", "densify_and_prune", "reset_opacity",
           "add_gaussians", "keep_gaussians", "DensifyResult"]

PARAM_NAMES = ("means", "sh_dc", "sh_rest", "log_scales", "quats", "opacity_logits")


class Adam:
    """Adam (torch's update rule) over named tensors whose rows may be added and removed.

    ``m`` / ``v`` hold the first and second moments per name, ``steps`` the per-name step count
    (as torch keeps one per parameter). 3DGS uses eps = 1e-15.
    """

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-15) -> None:
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.m: dict[str, Tensor] = {}
        self.v: dict[str, Tensor] = {}
        self.steps: dict[str, int] = {}

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], lrs: dict[str, float]) -> None:
        """One update of every tensor in ``params`` that has a gradient and a learning rate."""
        b1, b2 = self.betas
        for name, p in params.items():
            if p.grad is None or name not in lrs:
                continue
            if name not in self.m:
                self.m[name] = torch.zeros_like(p)
                self.v[name] = torch.zeros_like(p)
                self.steps[name] = 0
            g, m, v = p.grad, self.m[name], self.v[name]
            self.steps[name] += 1
            t = self.steps[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(self.eps)
            p.addcdiv_(m, denom, value=-lrs[name] / (1 - b1**t))

    def append_rows(self, name: str, count: int) -> None:
        """``count`` new rows with zero moments at the end of ``name``'s state."""
        if name in self.m and count:
            z = self.m[name].new_zeros((count, *self.m[name].shape[1:]))
            self.m[name] = torch.cat([self.m[name], z])
            self.v[name] = torch.cat([self.v[name], z.clone()])

    def keep_rows(self, name: str, index: Tensor) -> None:
        """Keep the rows ``index`` (long) of ``name``'s state, in that order."""
        if name in self.m:
            self.m[name] = self.m[name].index_select(0, index)
            self.v[name] = self.v[name].index_select(0, index)

    def reset(self, name: str) -> None:
        """Zero ``name``'s moments (3DGS after an opacity reset); the step count stays."""
        if name in self.m:
            self.m[name].zero_()
            self.v[name].zero_()

    def state_tensors(self) -> dict[str, Tensor]:
        return {**{f"adam.m.{k}": v for k, v in self.m.items()}, **{f"adam.v.{k}": v for k, v in self.v.items()}}

    def load_state(self, tensors: dict[str, Tensor], steps: dict[str, int]) -> None:
        self.m = {k[len("adam.m."):]: v.clone() for k, v in tensors.items() if k.startswith("adam.m.")}
        self.v = {k[len("adam.v."):]: v.clone() for k, v in tensors.items() if k.startswith("adam.v.")}
        self.steps = {k: int(s) for k, s in steps.items()}


@dataclass
class DensifyStats:
    """Per-Gaussian accumulators between two densifications: summed NDC gradient norms
    ``grad``, visible-view ``count`` and the largest screen radius ``max_radius`` as a
    fraction of the larger image side."""

    grad: Tensor  # [N] float32
    count: Tensor  # [N] float32
    max_radius: Tensor  # [N] float32

    @classmethod
    def zeros(cls, n: int) -> "DensifyStats":
        return cls(torch.zeros(n), torch.zeros(n), torch.zeros(n))

    @torch.no_grad()
    def update(self, means2d_grad: Tensor, visible: Tensor, extents: Tensor, width: int, height: int) -> None:
        """Add one view: ``means2d_grad`` [N, 2] d loss / d pixel position, ``visible`` [N] bool,
        ``extents`` [N, 2] screen half-widths in pixels."""
        g = means2d_grad.detach().float() * torch.tensor([0.5 * width, 0.5 * height])
        ids = torch.nonzero(visible).reshape(-1)
        self.grad.index_add_(0, ids, g.index_select(0, ids).norm(dim=-1))
        self.count.index_add_(0, ids, torch.ones(ids.numel()))
        r = extents.detach().float().index_select(0, ids).amax(dim=-1) / float(max(width, height))
        self.max_radius.index_copy_(0, ids, torch.maximum(self.max_radius.index_select(0, ids), r))

    def reset(self) -> None:
        self.grad.zero_()
        self.count.zero_()
        self.max_radius.zero_()

    def tensors(self) -> dict[str, Tensor]:
        return {"stats.grad": self.grad, "stats.count": self.count, "stats.max_radius": self.max_radius}


def _leaf(t: Tensor) -> Tensor:
    return t.detach().contiguous().requires_grad_(True)


@torch.no_grad()
def add_gaussians(params: dict[str, Tensor], adam: Adam, stats: DensifyStats, new: dict[str, Tensor]) -> None:
    """Append Gaussians ``new`` (one tensor per parameter name) with zero Adam moments and
    zero statistics; ``params`` is updated in place with new leaf tensors."""
    count = int(new["means"].shape[0])
    for name in PARAM_NAMES:
        params[name] = _leaf(torch.cat([params[name].detach(), new[name].to(params[name])]))
        adam.append_rows(name, count)
    stats.grad = torch.cat([stats.grad, torch.zeros(count)])
    stats.count = torch.cat([stats.count, torch.zeros(count)])
    stats.max_radius = torch.cat([stats.max_radius, torch.zeros(count)])


@torch.no_grad()
def keep_gaussians(params: dict[str, Tensor], adam: Adam, stats: DensifyStats, keep: Tensor) -> None:
    """Keep only the Gaussians where ``keep`` [N] bool is true (parameters, moments, stats)."""
    index = torch.nonzero(keep).reshape(-1)
    for name in PARAM_NAMES:
        params[name] = _leaf(params[name].detach().index_select(0, index))
        adam.keep_rows(name, index)
    stats.grad = stats.grad.index_select(0, index)
    stats.count = stats.count.index_select(0, index)
    stats.max_radius = stats.max_radius.index_select(0, index)


@torch.no_grad()
def reset_opacity(params: dict[str, Tensor], adam: Adam, value: float = 0.01) -> None:
    """Opacities become min(opacity, value) (3DGS's reset); their Adam moments are zeroed."""
    logits = params["opacity_logits"].detach()
    cap = math.log(value / (1 - value))
    params["opacity_logits"] = _leaf(torch.minimum(logits, torch.full_like(logits, cap)))
    adam.reset("opacity_logits")


@dataclass
class DensifyResult:
    cloned: int
    split: int
    pruned: int
    capped: bool  # growth was limited by max_gaussians


@torch.no_grad()
def densify_and_prune(params: dict[str, Tensor], adam: Adam, stats: DensifyStats, *, grad_threshold: float,
                      percent_dense: float, extent: float, min_opacity: float, max_world_size: float,
                      max_screen_size: float | None, max_gaussians: int,
                      generator: torch.Generator) -> DensifyResult:
    """Clone small and split large high-gradient Gaussians, then prune (see the module notes).

    ``max_screen_size`` None skips the screen-space test (before the first opacity reset).
    Growth never takes the count past ``max_gaussians``: when it would, the Gaussians with
    the highest mean gradients grow first (ties by index). Statistics are reset afterwards.
    """
    N = params["means"].shape[0]
    mean_grad = stats.grad / stats.count.clamp_min(1)
    mean_grad = torch.where(torch.isfinite(mean_grad), mean_grad, torch.zeros_like(mean_grad))
    high = mean_grad >= grad_threshold
    max_scale = params["log_scales"].detach().exp().amax(dim=-1)
    small = max_scale <= percent_dense * extent
    # a clone adds one Gaussian, a split adds two and removes one: +1 each
    room = max(0, max_gaussians - N)
    capped = int(high.sum()) > room
    if capped:
        order = torch.sort(torch.where(high, mean_grad, torch.full_like(mean_grad, -1.0)),
                           descending=True, stable=True).indices
        chosen = torch.zeros(N, dtype=torch.bool)
        chosen[order[:room]] = True
        high &= chosen
    clone, split = high & small, high & ~small
    n_clone, n_split = int(clone.sum()), int(split.sum())

    if n_clone:
        add_gaussians(params, adam, stats, {k: params[k].detach()[clone] for k in PARAM_NAMES})
    if n_split:
        sel = torch.nonzero(split).reshape(-1)  # indices below N: clones were appended after them
        p = {k: params[k].detach().index_select(0, sel) for k in PARAM_NAMES}
        scales = p["log_scales"].exp()
        rot = quat_to_rotmat(p["quats"])
        noise = torch.randn((2, sel.numel(), 3), generator=generator, dtype=scales.dtype)
        offsets = torch.einsum("nij,bnj->bni", rot, noise * scales[None])  # samples of N(0, Σ)
        new = {k: torch.cat([v, v]) for k, v in p.items()}
        new["means"] = (p["means"][None] + offsets).reshape(-1, 3)
        new["log_scales"] = torch.log(scales / 1.6).repeat(2, 1)
        add_gaussians(params, adam, stats, new)
        keep = torch.ones(params["means"].shape[0], dtype=torch.bool)
        keep[sel] = False
        keep_gaussians(params, adam, stats, keep)

    opacity = torch.sigmoid(params["opacity_logits"].detach())
    prune = opacity < min_opacity
    prune |= params["log_scales"].detach().exp().amax(dim=-1) > max_world_size * extent
    if max_screen_size is not None:
        prune |= stats.max_radius > max_screen_size
    n_prune = int(prune.sum())
    if n_prune and n_prune < prune.numel():  # never prune everything
        keep_gaussians(params, adam, stats, ~prune)
    else:
        n_prune = 0
    stats.reset()
    return DensifyResult(cloned=n_clone, split=n_split, pruned=n_prune, capped=capped)
