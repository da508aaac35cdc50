"""Settings of a per-scene 3D Gaussian Splatting fit and its two named schedules.

The optimisation follows 3DGS (Kerbl et al. 2023; GenSplat summary, Key Designs 1: the
Gaussians of a scene come from a per-scene 3DGS reconstruction): Adam with one learning rate
per parameter (the position's decaying exponentially and scaled by the scene extent), loss
(1 - λ) L1 + λ D-SSIM with λ = 0.2, adaptive density control (clone / split / prune, opacity
resets), spherical harmonics raised one degree at a time. The step counts are chosen for a CPU
and small images (128 x 128, ~20k initial points): see docs/recon.md for the schedules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["ReconConfig", "SCHEDULES", "schedule_config"]


@dataclass(frozen=True)
class ReconConfig:
    """One scene's reconstruction settings (validated on construction)."""

    schedule: str = "standard"  # the name of the schedule these numbers came from (recorded)
    steps: int = 1100  # optimisation steps, one training view each
    sh_degree: int = 1  # final spherical-harmonics degree (0-3; 0 or 1 on a CPU)
    sh_increase_every: int = 300  # raise the active degree by one every this many steps (3DGS: 1000)
    holdout_every: int = 8  # every k-th frame (index % k == 0) is held out (3DGS's llffhold); 0 = none
    background: tuple[float, float, float] | None = None  # RGB in [0, 1] behind the Gaussians;
    #   None = auto: the colour of the pixels without depth when they agree (a renderer's empty
    #   sky), else black (docs/recon.md)
    seed: int = 0
    half_resolution_until: int = 500  # train on half-resolution images up to this step (coarse to fine)
    eps2d: float = 0.1  # px^2 screen-space low-pass of the renderer (3DGS: 0.3, which blurs edges at 128 px)

    # learning rates: 3DGS's, doubled (a few hundred steps instead of 30k); positions: lr * extent,
    # decaying exponentially to the end
    position_lr_init: float = 3.2e-4
    position_lr_final: float = 1.6e-6
    sh_dc_lr: float = 2.5e-3
    sh_rest_lr: float = 2.5e-3 / 20
    opacity_lr: float = 0.025
    scaling_lr: float = 5e-3
    rotation_lr: float = 1e-3
    lr_scale: float = 2.0  # multiplies every Gaussian learning rate except the position's

    # loss
    lambda_dssim: float = 0.2
    depth_weight: float = 0.5  # L1 of rendered vs sensor depth (metres) where a frame has depth; 0 = off

    # initialisation
    init_opacity: float = 0.3  # 3DGS: 0.1; higher keeps surfaces few training views see opaque

    # adaptive density control (3DGS / gsplat DefaultStrategy)
    densify_from: int = 100  # densification starts after this step (3DGS: 500)
    densify_until: int = 850  # last step that may densify or reset opacities (3DGS: 15000)
    densify_every: int = 100
    densify_grad_threshold: float = 2e-4  # mean |d loss / d means2d| in NDC units
    percent_dense: float = 0.01  # clone when max scale <= percent_dense * extent, else split
    min_opacity: float = 0.005  # prune below
    max_world_size: float = 0.1  # prune when max scale > max_world_size * extent
    max_screen_size: float = 0.15  # prune when the screen radius exceeds this fraction of the image
    #                               (after the first opacity reset; gsplat's prune_scale2d)
    reset_every: int = 0  # opacity reset to min(o, 0.01) every this many steps; 0 = never (3DGS: 3000)
    max_gaussians: int = 35_000  # growth stops here (the highest gradients grow first)

    # robustness to real captures (docs/recon.md)
    exposure: Literal["auto", "on", "off"] = "auto"  # per-frame colour affine
    exposure_tolerance: float = 0.1  # "auto" turns it on when a frame's gain is off by more than this
    exposure_lr: float = 5e-3
    exposure_reg: float = 0.1  # weight of mean((gain - measured gain)^2 + bias^2)
    pose_check: bool = True  # skip frames whose pose disagrees with the scene
    pose_check_step: int = 300  # photometric outlier test after this many steps (0 = only the depth test)
    pose_agreement_drop: float = 0.15  # depth test: agreement below median - max(this, 6 MAD) is a bad pose
    photometric_outlier: float = 2.5  # photometric test: L1 above this multiple of the median

    checkpoint_every: int = 250  # steps between resumable checkpoints (when a folder is given)

    def __post_init__(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value < 0 or (value == 0 and not allow_zero):
                raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0, 1, 2 or 3, got {self.sh_degree}")
        if self.holdout_every < 0 or self.holdout_every == 1:
            raise ValueError(f"holdout_every must be 0 (no held-out views) or >= 2, got {self.holdout_every}")
        if self.background is not None and (len(self.background) != 3 or
                                            not all(0.0 <= float(c) <= 1.0 for c in self.background)):
            raise ValueError(f"background must be 3 numbers in [0, 1] (RGB) or None (auto), got {self.background}")
        for name in ("sh_increase_every", "densify_every", "position_lr_init", "position_lr_final",
                     "init_opacity", "max_gaussians", "percent_dense", "max_world_size",
                     "max_screen_size", "checkpoint_every", "lr_scale", "eps2d"):
            positive(name)
        for name in ("sh_dc_lr", "sh_rest_lr", "opacity_lr", "scaling_lr", "rotation_lr",
                     "depth_weight", "densify_from", "densify_until", "densify_grad_threshold",
                     "min_opacity", "reset_every", "exposure_lr", "half_resolution_until", "exposure_reg",
                     "pose_check_step", "exposure_tolerance"):
            positive(name, allow_zero=True)
        if not 0 <= self.lambda_dssim <= 1:
            raise ValueError(f"lambda_dssim must lie in [0, 1], got {self.lambda_dssim}")
        if not 0 < self.init_opacity < 1:
            raise ValueError(f"init_opacity must lie in (0, 1), got {self.init_opacity}")
        if self.exposure not in ("auto", "on", "off"):
            raise ValueError(f"exposure must be 'auto', 'on' or 'off', got {self.exposure!r}")
        if not 0 < self.pose_agreement_drop < 1:
            raise ValueError(f"pose_agreement_drop must lie in (0, 1), got {self.pose_agreement_drop}")
        if self.photometric_outlier <= 1:
            raise ValueError(f"photometric_outlier must be > 1, got {self.photometric_outlier}")


SCHEDULES: dict[str, ReconConfig] = {
    # ~3 minutes for a 128 x 128, 20-frame room on 2 cores
    "standard": ReconConfig(),
    # ~30 seconds: 200 steps, 140 of them at half resolution, densification every 50 steps
    "fast": ReconConfig(
        schedule="fast", steps=200, half_resolution_until=140, sh_increase_every=100, densify_from=50,
        densify_until=150, densify_every=50, max_gaussians=30_000, pose_check_step=100,
        checkpoint_every=50),
}


def schedule_config(name: str = "standard", **overrides) -> ReconConfig:
    """The named schedule's settings with ``overrides`` (field=value) applied and validated."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ReconConfig)}
    if unknown:
        raise ValueError(f"unknown reconstruction settings {sorted(unknown)}")
    return dataclasses.replace(SCHEDULES[name], **overrides)
