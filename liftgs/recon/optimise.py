"""Per-scene 3D Gaussian Splatting from posed RGB(-D) frames on the CPU renderer.

GenSplat summary, Key Designs 1: Stage I starts from Gaussians reconstructed per scene with
3DGS; this module makes them. :func:`reconstruct_scene` initialises one Gaussian per point of
the scene's fused cloud (scales from the 3 nearest neighbours, opacity 0.1, identity
rotation, SH DC from the point colour), then optimises means, log-scales, rotations, opacity
logits and SH coefficients with Adam against the training frames through
``liftgs.render.render_weights`` + ``composite``, with 3DGS's density control
(:mod:`liftgs.recon.densify`). Every ``holdout_every``-th frame never trains and is scored at
the end (PSNR, SSIM). Real captures are checked first (:mod:`liftgs.recon.checks`): frames
without depth get no depth loss, frames exposed differently get a learned colour affine, frames
whose pose disagrees with the scene are skipped; each with a
:class:`~liftgs.io.errors.DataWarning` naming the frames.

Random draws come from generators seeded by (seed, step), never from the global RNGs, so a
call changes no process-wide state, and a run resumed from a checkpoint
(:mod:`liftgs.recon.state`) ends bit for bit where the uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liftgs.io.errors import DataError, DataWarning
from liftgs.io.splat_ply import SH_C0, SplatCloud
from liftgs.recon.checks import FrameCheck, check_frames, contradicted_points, empty_background, relative_gains
from liftgs.recon.config import ReconConfig
from liftgs.recon.densify import PARAM_NAMES, Adam, DensifyStats, densify_and_prune, reset_opacity
from liftgs.recon.metrics import psnr, ssim
from liftgs.render import composite, render_weights
from liftgs.types import Scene

__all__ = ["reconstruct_scene", "init_gaussians", "sh_colors", "scene_extent", "View", "split_frames"]

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
MIN_HALF_SIZE = 64  # px: smaller images always train at full resolution
PHASES = ("render", "loss", "backward", "optimiser", "densify", "checks", "eval", "checkpoint")


# ----------------------------------------------------------------------------- pieces


def sh_colors(sh_dc: Tensor, sh_rest: Tensor, means: Tensor, campos: Tensor, degree: int) -> Tensor:
    """RGB [N, 3] of SH coefficients up to ``degree`` seen from ``campos`` (3DGS's eval_sh,
    + 0.5, clamped at 0)."""
    c = SH_C0 * sh_dc[:, 0]
    if degree >= 1:
        d = F.normalize(means - campos, dim=-1)
        x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        r = sh_rest
        c = c - SH_C1 * y * r[:, 0] + SH_C1 * z * r[:, 1] - SH_C1 * x * r[:, 2]
        if degree >= 2:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            c = (c + SH_C2[0] * xy * r[:, 3] + SH_C2[1] * yz * r[:, 4]
                 + SH_C2[2] * (2 * zz - xx - yy) * r[:, 5] + SH_C2[3] * xz * r[:, 6]
                 + SH_C2[4] * (xx - yy) * r[:, 7])
            if degree >= 3:
                c = (c + SH_C3[0] * y * (3 * xx - yy) * r[:, 8] + SH_C3[1] * xy * z * r[:, 9]
                     + SH_C3[2] * y * (4 * zz - xx - yy) * r[:, 10]
                     + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * r[:, 11]
                     + SH_C3[4] * x * (4 * zz - xx - yy) * r[:, 12] + SH_C3[5] * z * (xx - yy) * r[:, 13]
                     + SH_C3[6] * x * (xx - 3 * yy) * r[:, 14])
    return (c + 0.5).clamp_min(0.0)


def init_gaussians(points: np.ndarray, colors: np.ndarray, sh_degree: int,
                   init_opacity: float = 0.1) -> dict[str, Tensor]:
    """Initial parameters from a point cloud (3DGS's create_from_pcd): scale = root mean
    squared distance to the 3 nearest neighbours (isotropic, log), opacity ``init_opacity``,
    identity rotation, SH DC from the colour, higher coefficients zero."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    k = min(4, n)
    if k > 1:
        dist, _ = cKDTree(pts).query(pts, k=k)
        dist2 = (dist[:, 1:] ** 2).mean(axis=1)
    else:
        dist2 = np.full(n, 1e-4)
    dist2 = np.maximum(dist2, 1e-7)
    K = (sh_degree + 1) ** 2
    cols = torch.from_numpy(np.asarray(colors, dtype=np.float32))
    return {
        "means": torch.from_numpy(pts.astype(np.float32)),
        "sh_dc": ((cols - 0.5) / SH_C0)[:, None, :].contiguous(),
        "sh_rest": torch.zeros(n, K - 1, 3),
        "log_scales": torch.from_numpy(np.log(np.sqrt(dist2)).astype(np.float32))[:, None].repeat(1, 3),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "opacity_logits": torch.full((n,), math.log(init_opacity / (1 - init_opacity))),
    }


def scene_extent(viewmats: list[np.ndarray], points: np.ndarray) -> float:
    """3DGS's scene extent: 1.1 x the largest distance of a camera centre from their mean;
    at least a tenth of the diagonal of the points' 1-99 % box (a scan turning in place)."""
    centres = np.stack([np.linalg.inv(v)[:3, 3] for v in viewmats])
    radius = 1.1 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    lo, hi = np.percentile(points, [1, 99], axis=0)
    return max(radius, 0.1 * float(np.linalg.norm(hi - lo)), 1e-3)


def position_lr(config: ReconConfig, step: int, extent: float) -> float:
    """Exponential decay from ``position_lr_init`` to ``position_lr_final`` (x extent)."""
    t = min(max(step / config.steps, 0.0), 1.0)
    return extent * math.exp(math.log(config.position_lr_init) * (1 - t) + math.log(config.position_lr_final) * t)


def split_frames(num_frames: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(training, held-out) frame indices: index % k == 0 is held out (3DGS's llffhold)."""
    if holdout_every <= 0:
        return list(range(num_frames)), []
    held = [i for i in range(num_frames) if i % holdout_every == 0]
    return [i for i in range(num_frames) if i % holdout_every != 0], held


@dataclass
class View:
    """One frame ready to render. Colour and depth stay in the frame's arrays (uint8, metres)
    and become tensors when used, so a long scan costs no second copy of its images.
    ``factor`` 2 is the frame at half resolution (:meth:`half`)."""

    index: int
    name: str
    rgb: np.ndarray  # [H0, W0, 3] uint8, the frame's
    raw_depth: np.ndarray | None  # [H0, W0] metres, 0 = invalid; None = no depth loss
    viewmat: Tensor
    K: Tensor
    campos: Tensor
    width: int
    height: int
    factor: int = 1

    @property
    def has_depth(self) -> bool:
        return self.raw_depth is not None

    def image(self) -> Tensor:
        """[H, W, 3] float in [0, 1] (2 x 2 means at half resolution)."""
        img = torch.from_numpy(self.rgb).float() / 255.0
        if self.factor == 2:
            h, w = self.height, self.width
            img = img[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(dim=(1, 3))
        return img

    def depth(self) -> Tensor | None:
        """[H, W] metres, 0 = invalid (at half resolution: the mean of the valid samples)."""
        if self.raw_depth is None:
            return None
        d = torch.from_numpy(np.nan_to_num(self.raw_depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0))
        d = d.clamp_min(0.0)
        if self.factor == 2:
            h, w = self.height, self.width
            d = d[: 2 * h, : 2 * w].reshape(h, 2, w, 2)
            n = (d > 0).sum(dim=(1, 3))
            d = torch.where(n > 0, d.sum(dim=(1, 3)) / n.clamp_min(1), torch.zeros_like(d[:, 0, :, 0]))
        return d

    def half(self) -> "View":
        """This view at half resolution: ``K`` scaled by 1/2 (exact for pixel centres at +0.5),
        an odd last row / column dropped."""
        K = self.K.clone()
        K[:2] *= 0.5
        return dataclasses.replace(self, K=K, width=self.width // 2, height=self.height // 2, factor=2)


def _views(scene: Scene, checks: list[FrameCheck]) -> list[View]:
    views = []
    for i, (f, c) in enumerate(zip(scene.frames, checks)):
        cam = f.camera
        views.append(View(index=i, name=c.name, rgb=f.rgb, raw_depth=f.depth if c.depth_problem is None else None,
                          viewmat=torch.from_numpy(cam.viewmat.astype(np.float32)),
                          K=torch.from_numpy(cam.K.astype(np.float32)),
                          campos=torch.from_numpy(cam.position.astype(np.float32)),
                          width=cam.width, height=cam.height))
    return views


def render_view(params: dict[str, Tensor], view: View, degree: int, background: Tensor,
                with_depth: bool = False, eps2d: float = 0.3):
    """(image [H, W, 3], depth [H, W] or None, weights) of ``view``; differentiable."""
    scales = params["log_scales"].exp()
    opac = torch.sigmoid(params["opacity_logits"])
    W = render_weights(params["means"], params["quats"], scales, opac, view.viewmat, view.K,
                       view.width, view.height, eps2d=eps2d)
    rgb = sh_colors(params["sh_dc"], params["sh_rest"], params["means"], view.campos, degree)
    if with_depth:
        attrs = torch.cat([rgb, W.projection.depths[:, None]], dim=1)
        bg = torch.cat([background, background.new_zeros(1)])
    else:
        attrs, bg = rgb, background
    vals, _ = composite(W, attrs, bg)
    image = vals[:, :3].reshape(view.height, view.width, 3)
    depth = vals[:, 3].reshape(view.height, view.width) if with_depth else None
    return image, depth, W


def _names(views: list[View], indices) -> str:
    names = [views[i].name for i in indices]
    return ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")


# ------------------------------------------------------------------------------- the run


class _Run:
    """State of one reconstruction (what a checkpoint holds)."""

    def __init__(self, scene: Scene, config: ReconConfig, init_points, warn) -> None:
        self.scene, self.config, self.warn = scene, config, warn
        self.warnings: list[str] = []
        if not scene.frames:
            raise DataError(f"scene {scene.scene_id}: no frames to reconstruct from")
        points, colors = (scene.points, scene.colors) if init_points is None else init_points
        points = np.asarray(points, dtype=np.float32)
        colors = np.asarray(colors, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0 or colors.shape != points.shape:
            raise DataError(f"scene {scene.scene_id}: the initial point cloud must be non-empty [P, 3] "
                            f"points with [P, 3] colours, got {list(points.shape)} / {list(colors.shape)}")
        if not (np.isfinite(points).all() and np.isfinite(colors).all()):
            raise DataError(f"scene {scene.scene_id}: the initial point cloud holds NaN/inf values")
        self.points, self.colors = points, np.clip(colors, 0.0, 1.0)
        self.train, self.held = split_frames(len(scene.frames), config.holdout_every)
        if not self.train:
            raise DataError(f"scene {scene.scene_id}: no training frames (holdout_every="
                            f"{config.holdout_every} holds out all {len(scene.frames)})")
        self.extent = scene_extent([f.camera.viewmat for f in scene.frames], self.points)
        self.background = torch.zeros(3)
        self.background_source = "config"
        self.timings = dict.fromkeys(PHASES, 0.0)
        self.step = 0
        self.elapsed = 0.0
        self.refills = 0
        self.queue: list[int] = []
        self.dropped: list[int] = []

    # ---- set-up: checks, parameters
    def prepare(self) -> None:
        t0 = time.perf_counter()
        cfg, scene = self.config, self.scene
        fused = (scene.points, scene.colors) if scene.num_points else (self.points, self.colors)
        self.checks = check_frames(fused[0], fused[1], scene.frames)
        self.views = _views(scene, self.checks)
        if cfg.background is not None:
            self.background = torch.tensor(cfg.background, dtype=torch.float32)
        else:
            bg = empty_background(scene.frames)
            self.background_source = "pixels without depth" if bg is not None else "black (default)"
            self.background = torch.tensor(bg if bg is not None else np.zeros(3), dtype=torch.float32)
        no_depth = [c for c in self.checks if c.depth_problem is not None]
        with_depth = len(self.checks) - len(no_depth)
        if no_depth and with_depth and cfg.depth_weight > 0:
            kinds = sorted({c.depth_problem for c in no_depth})
            self._warn(f"scene {scene.scene_id}: frames {_names(self.views, [c.index for c in no_depth])} have "
                       f"no usable depth ({', '.join(kinds)}); the depth loss skips them")
        self.exposure_on = False
        self.gains = relative_gains(self.checks)
        off = {i: g for i, g in self.gains.items() if abs(math.log(g)) > math.log1p(cfg.exposure_tolerance)}
        if cfg.exposure == "on" or (cfg.exposure == "auto" and off):
            self.exposure_on = True
        if off and cfg.exposure != "off":
            shown = ", ".join(f"{self.views[i].name} (x{g:.2f})" for i, g in sorted(off.items())[:10])
            held_off = [i for i in off if i in self.held]
            tail = (f"; held-out frames {_names(self.views, held_off)} are scored without it"
                    if held_off else "")
            self._warn(f"scene {scene.scene_id}: exposure differs between frames: {shown} against the median "
                       f"frame; a per-frame colour gain and bias is learned for the training frames{tail}")
        elif off:
            self._warn(f"scene {scene.scene_id}: exposure differs between frames "
                       f"({_names(self.views, sorted(off))}); exposure compensation is off")
        if cfg.pose_check:
            agreements = {c.index: c.agreement for c in self.checks if c.agreement is not None}
            if len(agreements) >= 3:
                values = np.array(list(agreements.values()))
                med = float(np.median(values))
                limit = med - max(cfg.pose_agreement_drop, 6.0 * float(np.median(np.abs(values - med))))
                bad = sorted(i for i, a in agreements.items() if a < limit)
                if bad and len(bad) < len(agreements) / 2:
                    kept = [f for i, f in enumerate(scene.frames) if i not in bad]
                    floaters = contradicted_points(self.points, kept)
                    if floaters.any() and not floaters.all():
                        self.points, self.colors = self.points[~floaters], self.colors[~floaters]
                    self._drop(bad, "its depth disagrees with the fused point cloud (agreement "
                               + ", ".join(f"{agreements[i]:.2f}" for i in bad) + f" vs median {med:.2f}); "
                               f"a bad pose? {int(floaters.sum())} points the other frames see through are "
                               "left out of the initial Gaussians")
        self.params = init_gaussians(self.points, self.colors, cfg.sh_degree, cfg.init_opacity)
        for k in PARAM_NAMES:
            self.params[k].requires_grad_(True)
        F_ = len(scene.frames)
        # gains start at the measured relative gains of the training frames (their rows are
        # updated only when the frame is drawn, too rarely to find them from 1 in a short run)
        self.gain0 = torch.ones(F_, 3)
        if self.exposure_on:
            for i, g in self.gains.items():
                if i in self.train:
                    self.gain0[i] = float(g)
        self.exposure = {"exposure_gain": self.gain0.clone().requires_grad_(True),
                         "exposure_bias": torch.zeros(F_, 3).requires_grad_(True)}
        self.adam = Adam()
        self.stats = DensifyStats.zeros(self.points.shape[0])
        self.timings["checks"] += time.perf_counter() - t0

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.warn is not None:
            self.warn(message)
        else:
            warnings.warn(message, DataWarning, stacklevel=4)

    def _drop(self, indices: list[int], why: str) -> None:
        indices = [i for i in indices if i not in self.dropped]
        if not indices:
            return
        self.dropped.extend(indices)
        self.queue = [i for i in self.queue if i not in indices]
        self._warn(f"scene {self.scene.scene_id}: skipping frames {_names(self.views, indices)}: {why}")

    @property
    def active_train(self) -> list[int]:
        return [i for i in self.train if i not in self.dropped]

    @property
    def active_held(self) -> list[int]:
        return [i for i in self.held if i not in self.dropped]

    def active_degree(self, step: int) -> int:
        return min(self.config.sh_degree, step // self.config.sh_increase_every)

    def next_view(self) -> int:
        if not self.queue:
            rng = np.random.default_rng([self.config.seed, self.refills])
            self.refills += 1
            self.queue = [int(i) for i in rng.permutation(self.active_train)]
        return self.queue.pop(0)

    def lrs(self, step: int) -> dict[str, float]:
        cfg, s = self.config, self.config.lr_scale
        lrs = {"means": position_lr(cfg, step, self.extent), "sh_dc": cfg.sh_dc_lr * s,
               "sh_rest": cfg.sh_rest_lr * s, "log_scales": cfg.scaling_lr * s,
               "quats": cfg.rotation_lr * s, "opacity_logits": cfg.opacity_lr * s}
        if self.exposure_on:
            lrs["exposure_gain"] = lrs["exposure_bias"] = cfg.exposure_lr
        return lrs

    # ---- one step
    def train_step(self) -> dict[str, float]:
        cfg = self.config
        self.step += 1
        step = self.step
        t0 = time.perf_counter()
        vi = self.next_view()
        view = self.views[vi]
        if step <= cfg.half_resolution_until and min(view.width, view.height) >= MIN_HALF_SIZE:
            view = view.half()
        use_depth = cfg.depth_weight > 0 and view.has_depth
        image, depth, W = render_view(self.params, view, self.active_degree(step), self.background, use_depth,
                                      cfg.eps2d)
        means2d = W.projection.means2d
        means2d.retain_grad()
        if self.exposure_on:
            gain, bias = self.exposure["exposure_gain"][vi], self.exposure["exposure_bias"][vi]
            image = image * gain + bias
        t1 = time.perf_counter()
        target = view.image()
        l1 = (image - target).abs().mean()
        loss = (1 - cfg.lambda_dssim) * l1
        if cfg.lambda_dssim > 0:
            loss = loss + cfg.lambda_dssim * (1 - ssim(image, target))
        if use_depth:
            sensed = view.depth()
            valid = sensed > 0
            if bool(valid.any()):
                loss = loss + cfg.depth_weight * (depth[valid] - sensed[valid]).abs().mean()
        if self.exposure_on:
            loss = loss + cfg.exposure_reg * ((gain - self.gain0[vi]) ** 2 + bias**2).mean()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        densifying = step <= cfg.densify_until
        if densifying and means2d.grad is not None:
            self.stats.update(means2d.grad, W.projection.valid, W.projection.extents, view.width, view.height)
        all_params = {**self.params, **self.exposure} if self.exposure_on else self.params
        self.adam.step(all_params, self.lrs(step))
        for p in all_params.values():
            p.grad = None
        t4 = time.perf_counter()
        info = {"loss": float(loss.detach()), "psnr": psnr(image.clamp(0, 1), target)}
        if densifying:
            self._density_control(step)
        t5 = time.perf_counter()
        if cfg.pose_check and step == cfg.pose_check_step and step < cfg.steps:
            self._photometric_check()
        t6 = time.perf_counter()
        for name, dt in zip(("render", "loss", "backward", "optimiser", "densify", "checks"),
                            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            self.timings[name] += dt
        return info

    def _density_control(self, step: int) -> None:
        cfg = self.config
        if step > cfg.densify_from and step % cfg.densify_every == 0:
            first_reset_done = cfg.reset_every > 0 and step > cfg.reset_every
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            densify_and_prune(self.params, self.adam, self.stats, grad_threshold=cfg.densify_grad_threshold,
                              percent_dense=cfg.percent_dense, extent=self.extent,
                              min_opacity=cfg.min_opacity, max_world_size=cfg.max_world_size,
                              max_screen_size=cfg.max_screen_size if first_reset_done else None,
                              max_gaussians=cfg.max_gaussians, generator=gen)
        if cfg.reset_every > 0 and step % cfg.reset_every == 0 and step < cfg.densify_until:
            reset_opacity(self.params, self.adam, 0.01)

    @torch.no_grad()
    def frame_l1(self, indices: list[int]) -> dict[int, float]:
        out = {}
        degree = self.active_degree(self.step)
        for i in indices:
            view = self.views[i]
            image, _, _ = render_view(self.params, view, degree, self.background, eps2d=self.config.eps2d)
            if self.exposure_on:
                image = image * self.exposure["exposure_gain"][i] + self.exposure["exposure_bias"][i]
            out[i] = float((image - view.image()).abs().mean())
        return out

    def _photometric_check(self) -> None:
        """Frames without usable depth (all frames when none has depth): skipped when their L1
        exceeds ``photometric_outlier`` times both the median training L1 and the median of
        their neighbours in capture order (2 training frames on each side), so a region that is
        merely hard to fit, seen by consecutive frames, is kept."""
        train = self.active_train
        any_depth = any(self.views[i].has_depth for i in train)
        candidates = [i for i in train if not self.views[i].has_depth] if any_depth else list(train)
        if not candidates or len(train) < 5:
            return
        losses = self.frame_l1(train)
        med = float(np.median(list(losses.values())))
        ratio = self.config.photometric_outlier
        bad = []
        for i in candidates:
            pos = train.index(i)
            near = train[max(0, pos - 2):pos] + train[pos + 1:pos + 3]
            local = float(np.median([losses[j] for j in near]))
            if losses[i] > ratio * med and losses[i] > ratio * local:
                bad.append(i)
        if bad and len(bad) < len(train) / 4:
            self._drop(bad, f"its photometric loss after {self.step} steps stays an outlier (L1 "
                       + ", ".join(f"{losses[i]:.3f}" for i in bad) + f" vs median {med:.3f}); a bad pose?")

    # ---- results
    @torch.no_grad()
    def evaluate(self) -> dict:
        t0 = time.perf_counter()
        degree = self.active_degree(self.step)
        per_view = []
        for i in self.active_held:
            view = self.views[i]
            image, _, _ = render_view(self.params, view, degree, self.background, eps2d=self.config.eps2d)
            image = image.clamp(0, 1)
            target = view.image()
            per_view.append({"frame": i, "name": view.name, "psnr": psnr(image, target),
                             "ssim": float(ssim(image, target))})
        train = self.frame_l1_psnr(self.active_train, degree)
        self.timings["eval"] += time.perf_counter() - t0
        mean = (lambda key: float(np.mean([v[key] for v in per_view])) if per_view else None)
        return {"heldout": per_view, "heldout_psnr": mean("psnr"), "heldout_ssim": mean("ssim"),
                "train_psnr": train}

    def frame_l1_psnr(self, indices: list[int], degree: int) -> float | None:
        values = []
        for i in indices:
            view = self.views[i]
            image, _, _ = render_view(self.params, view, degree, self.background, eps2d=self.config.eps2d)
            if self.exposure_on:
                image = image * self.exposure["exposure_gain"][i] + self.exposure["exposure_bias"][i]
            values.append(psnr(image.clamp(0, 1), view.image()))
        return float(np.mean(values)) if values else None

    def cloud(self) -> SplatCloud:
        p = self.params
        sh = torch.cat([p["sh_dc"], p["sh_rest"]], dim=1)
        return SplatCloud.from_tensors(p["means"], sh, p["opacity_logits"], p["log_scales"], p["quats"])


def reconstruct_scene(scene: Scene, config: ReconConfig, *,
                      init_points: tuple[np.ndarray, np.ndarray] | None = None,
                      checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = False,
                      warn: Callable[[str], None] | None = None,
                      on_step: Callable[[int], None] | None = None) -> tuple[SplatCloud, dict]:
    """Fit 3D Gaussians to ``scene``'s frames; returns (Gaussians, summary dict).

    ``init_points``: (points [P, 3], colours [P, 3] in [0, 1]) to start from instead of the
    scene's fused cloud (e.g. any PLY of points). ``checkpoint_dir``: where a resumable state
    is written every ``config.checkpoint_every`` steps; with ``resume`` an intact one found
    there is continued (the result equals the uninterrupted run's). ``warn`` receives each
    data warning (default: ``warnings.warn`` with :class:`DataWarning`); the summary lists
    them too. ``on_step(step)`` is called after every step. Changes no process-wide state.
    """
    from liftgs.recon.state import load_state, save_state

    start = time.perf_counter()
    run = _Run(scene, config, init_points, warn)
    run.prepare()
    if not run.active_train:
        raise DataError(f"scene {scene.scene_id}: every training frame was skipped")
    resumed_from = None
    if resume and checkpoint_dir is not None:
        resumed_from = load_state(run, Path(checkpoint_dir))  # None when there is none
    offset = run.elapsed if resumed_from is not None else 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=run.step, desc=f"recon {scene.scene_id}", unit="step",
                   dynamic_ncols=True)
    info = {}
    try:
        while run.step < config.steps:
            info = run.train_step()
            if bar is not None:
                bar.update(1)
                if run.step % 10 == 0 or run.step == config.steps:
                    bar.set_postfix(loss=f"{info['loss']:.4f}", psnr=f"{info['psnr']:.2f}",
                                    gaussians=run.params["means"].shape[0], refresh=False)
            if checkpoint_dir is not None and run.step % config.checkpoint_every == 0 and run.step < config.steps:
                t0 = time.perf_counter()
                run.elapsed = offset + time.perf_counter() - start
                save_state(run, Path(checkpoint_dir))
                run.timings["checkpoint"] += time.perf_counter() - t0
            if on_step is not None:
                on_step(run.step)
    finally:
        if bar is not None:
            bar.close()
    metrics = run.evaluate()
    cloud = run.cloud()
    seconds = offset + time.perf_counter() - start
    summary = {
        "scene_id": scene.scene_id,
        "schedule": config.schedule,
        "steps": config.steps,
        "sh_degree": config.sh_degree,
        "num_gaussians": cloud.num_gaussians,
        "initial_gaussians": int(run.points.shape[0]),
        **metrics,
        "seconds": seconds,
        "seconds_by_phase": {k: round(v, 3) for k, v in run.timings.items()},
        "extent": run.extent,
        "background": [round(float(c), 4) for c in run.background],
        "background_source": run.background_source,
        "train_frames": [run.views[i].name for i in run.active_train],
        "heldout_frames": [run.views[i].name for i in run.active_held],
        "skipped_frames": [run.views[i].name for i in run.dropped],
        "frames_without_depth": [c.name for c in run.checks if c.depth_problem is not None],
        "exposure_compensation": run.exposure_on,
        "relative_gains": {run.views[i].name: round(g, 4) for i, g in sorted(run.gains.items())},
        "resumed_from_step": resumed_from,
        "warnings": list(run.warnings),
    }
    return cloud, summary
