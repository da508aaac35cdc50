"""Checks of real captures before a reconstruction trusts them (docs/recon.md, "Robustness").

The tests use the scene's fused point cloud, which pools all frames and so reflects their
consensus:

* **depth**: a frame without a depth file or whose depth is all zeros gets no depth loss;
* **pose**: the cloud is projected into each frame with depth; of the points in front of the
  sensed surface (``z <= d + 0.1 m``) the fraction within ``max(5 cm, 3 % of d)`` of the sensed
  depth is the frame's *agreement*. A frame whose agreement lies more than
  ``max(pose_agreement_drop, 6 MAD)`` below the median agreement (MAD: the median absolute
  deviation over the frames) has a pose that disagrees with the other frames;
* **floaters of skipped frames**: a point that more frames with depth see *through* (it lies
  in front of their sensed surface by more than ``max(10 cm, 5 % of d)``) than see *at* it
  (within the agreement tolerance) contradicts the kept frames; after frames are skipped for
  a bad pose, such points (what the bad frames put into the fused cloud) are left out of the
  initialisation;
* **background**: pixels without depth in frames that have depth see nothing the sensor could
  range; when they are at least 0.5 % of those frames' pixels and share one colour (standard
  deviation below 0.05 per channel) that colour is the background behind the Gaussians (a
  renderer's empty sky); otherwise black;
* **exposure**: frames are compared with each other through the points both see (points
  agreeing with a frame's depth, or the nearest point per pixel without depth): pairwise median
  colour ratios give each frame a *gain* relative to the median frame, and a frame whose gain
  differs from 1 by more than the tolerance (10 % by default) was exposed differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftgs.geometry import project_points
from liftgs.types import Frame

__all__ = ["FrameCheck", "check_frames", "depth_problem", "relative_gains", "empty_background",
           "contradicted_points"]

OCCLUSION_MARGIN = 0.10  # m: a point this far behind the sensed surface is hidden by it
MIN_PAIRS = 50  # fewer point-pixel pairs than this give no estimate


@dataclass
class FrameCheck:
    """What the checks found for one frame (None = not measurable)."""

    index: int
    name: str
    depth_problem: str | None  # "no depth file" / "depth is all zeros" / None
    agreement: float | None  # fraction of visible points agreeing with the frame's depth
    gain: float | None  # brightness relative to the median frame (pairwise colour ratios)


def depth_problem(frame: Frame) -> str | None:
    """Why ``frame``'s depth cannot be used, or None when it can."""
    if frame.depth is None:
        return "no depth file"
    d = frame.depth
    if not (np.isfinite(d) & (d > 0)).any():
        return "depth is all zeros"
    return None


def _projected(points: np.ndarray, frame: Frame):
    cam = frame.camera
    uv, z = project_points(points, cam.K, cam.viewmat)
    ok = np.isfinite(uv).all(axis=1) & (z > 1e-3)
    col = np.floor(np.where(ok, uv[:, 0], -1)).astype(np.int64)
    row = np.floor(np.where(ok, uv[:, 1], -1)).astype(np.int64)
    ok &= (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
    idx = np.flatnonzero(ok)
    return idx, row[idx], col[idx], z[idx]


def _nearest_per_pixel(idx, row, col, z, width: int):
    """The nearest projected point of every pixel a point lands in (a point z-buffer)."""
    flat = row * width + col
    order = np.lexsort((z, flat))
    flat_s = flat[order]
    first = np.r_[True, flat_s[1:] != flat_s[:-1]] if flat_s.size else np.zeros(0, bool)
    keep = order[first]
    return idx[keep], row[keep], col[keep], z[keep]


def check_frames(points: np.ndarray, colors: np.ndarray, frames: list[Frame],
                 max_points: int = 20_000) -> list[FrameCheck]:
    """Depth, pose agreement and relative gain of every frame (module notes).

    Gains compare frames with each other through the points both see (the cloud's own colours
    average the frames, so comparing a frame with them would understate its change): for every
    pair of frames sharing at least 50 bright, unclipped points, the median ratio of their
    summed RGB; log-gains then solve these pairwise ratios in the least-squares sense (weights
    = sqrt(shared points)), normalised to a median gain of 1. At most ``max_points`` points
    (every k-th) take part in the gain estimate.
    """
    P = points.shape[0]
    stride = max(1, -(-P // max_points))
    sample = np.arange(0, P, stride)
    seen = np.full((len(frames), sample.size), np.nan)  # summed RGB of each sampled point per frame
    slot = np.full(P, -1, np.int64)
    slot[sample] = np.arange(sample.size)
    out = []
    for i, frame in enumerate(frames):
        problem = depth_problem(frame)
        idx, row, col, z = _projected(points, frame)
        agreement = None
        if problem is None and idx.size:
            d = frame.depth[row, col].astype(np.float64)
            visible = (d > 0) & np.isfinite(d) & (z <= d + OCCLUSION_MARGIN)
            close = visible & (np.abs(z - d) <= np.maximum(0.05, 0.03 * d))
            if visible.sum() >= MIN_PAIRS:
                agreement = float(close.sum() / visible.sum())
            idx, row, col = idx[close], row[close], col[close]
        else:
            idx, row, col, _ = _nearest_per_pixel(idx, row, col, z, frame.camera.width)
        rgb = frame.rgb[row, col]
        usable = (slot[idx] >= 0) & (rgb.max(1) < 250)  # clipped pixels say nothing about gain
        seen[i, slot[idx[usable]]] = rgb[usable].astype(np.float64).sum(1) / 255.0
        out.append(FrameCheck(index=i, name=frame.name or f"{i:06d}", depth_problem=problem,
                              agreement=agreement, gain=None))
    for i, g in _solve_gains(seen).items():
        out[i].gain = g
    return out


def _solve_gains(seen: np.ndarray) -> dict[int, float]:
    """Frame -> gain from pairwise median ratios over shared points (see :func:`check_frames`)."""
    F = seen.shape[0]
    bright = np.isfinite(seen) & (seen > 0.3)
    rows, rhs, weights = [], [], []
    for a in range(F):
        for b in range(a + 1, F):
            common = bright[a] & bright[b]
            n = int(common.sum())
            if n < MIN_PAIRS:
                continue
            rows.append((a, b))
            rhs.append(float(np.log(np.median(seen[a, common] / seen[b, common]))))
            weights.append(np.sqrt(n))
    linked = sorted({f for pair in rows for f in pair})
    if not rows:
        return {}
    col = {f: k for k, f in enumerate(linked)}
    A = np.zeros((len(rows) + 1, len(linked)))
    y = np.zeros(len(rows) + 1)
    for r, ((a, b), v, w) in enumerate(zip(rows, rhs, weights)):
        A[r, col[a]], A[r, col[b]], y[r] = w, -w, w * v
    A[-1, :] = 1.0  # gauge: log-gains sum to zero (then re-centred on the median)
    x = np.linalg.lstsq(A, y, rcond=None)[0]
    x -= np.median(x)
    return {f: float(np.exp(x[col[f]])) for f in linked}


def relative_gains(checks: list[FrameCheck]) -> dict[int, float]:
    """Frame index -> gain relative to the median frame, for the frames with an estimate."""
    gains = {c.index: c.gain for c in checks if c.gain is not None and c.gain > 0}
    if not gains:
        return {}
    med = float(np.median(list(gains.values())))
    return {i: g / med for i, g in gains.items()}


def empty_background(frames: list[Frame], min_fraction: float = 0.005, max_std: float = 0.05) -> np.ndarray | None:
    """The colour [3] in [0, 1] of the pixels without depth, if they agree (module notes), else None."""
    values, total = [], 0
    for f in frames:
        if depth_problem(f) is not None:
            continue
        d = f.depth
        empty = ~(np.isfinite(d) & (d > 0))
        total += d.size
        if empty.any():
            values.append(f.rgb[empty].astype(np.float64) / 255.0)
    if not values or total == 0:
        return None
    px = np.concatenate(values)
    if px.shape[0] < min_fraction * total or float(px.std(axis=0).max()) > max_std:
        return None
    return np.median(px, axis=0)


def contradicted_points(points: np.ndarray, frames: list[Frame]) -> np.ndarray:
    """[P] bool: points that more of ``frames`` (those with depth) see through than see (module notes)."""
    seen = np.zeros(points.shape[0], np.int32)
    through = np.zeros(points.shape[0], np.int32)
    for frame in frames:
        if depth_problem(frame) is not None:
            continue
        idx, row, col, z = _projected(points, frame)
        d = frame.depth[row, col].astype(np.float64)
        valid = (d > 0) & np.isfinite(d)
        seen[idx[valid & (np.abs(z - d) <= np.maximum(0.05, 0.03 * d))]] += 1
        through[idx[valid & (z < d - np.maximum(OCCLUSION_MARGIN, 0.05 * d))]] += 1
    return through > seen
