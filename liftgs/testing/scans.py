"""Fabricated RGB-D scans for reconstruction tests: a textured room seen by a ring of cameras,
and a "real-data-like" copy of it with the faults real captures have.

:func:`fabricate_scan` samples a closed room (checkered floor, striped walls, a few coloured
boxes) densely, renders every frame with a point z-buffer (colour and depth), and fuses the
frames into the scene's point cloud the way converters do (``liftgs.geometry.fuse_frames``).
:func:`degrade_scan` then removes or zeroes some frames' depth, changes some frames' exposure
and perturbs some poses, and fuses the cloud again from the degraded frames, as a real scan's
cloud would be.
"""

from __future__ import annotations

import numpy as np

from liftgs.geometry import fuse_frames, look_at
from liftgs.testing.rooms import _zbuffer
from liftgs.types import Camera, Frame, Scene

__all__ = ["fabricate_scan", "degrade_scan"]


def _plane(origin, u, v, nu: int, nv: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Points on the parallelogram origin + [0,1] u + [0,1] v (jittered grid) and their (s, t)."""
    s, t = np.meshgrid((np.arange(nu) + rng.uniform(0.2, 0.8, nu)) / nu,
                       (np.arange(nv) + rng.uniform(0.2, 0.8, nv)) / nv, indexing="ij")
    s, t = s.ravel(), t.ravel()
    pts = np.asarray(origin) + s[:, None] * np.asarray(u) + t[:, None] * np.asarray(v)
    return pts, np.stack([s, t], 1)


def _room_surface(rng, size: float, height: float, spacing: float):
    pts, cols = [], []
    n = int(size / spacing)
    floor, st = _plane((0, 0, 0), (size, 0, 0), (0, size, 0), n, n, rng)
    checker = ((np.floor(st[:, 0] * 3) + np.floor(st[:, 1] * 3)) % 2)[:, None]
    pts.append(floor)
    cols.append(np.where(checker > 0, [0.85, 0.8, 0.7], [0.35, 0.3, 0.3]))
    walls = [((0, 0, 0), (size, 0, 0)), ((size, 0, 0), (0, size, 0)),
             ((size, size, 0), (-size, 0, 0)), ((0, size, 0), (0, -size, 0))]
    tints = rng.uniform(0.3, 0.9, (4, 3))
    nh = int(height / spacing)
    for (o, u), tint in zip(walls, tints):
        p, st = _plane(o, u, (0, 0, height), n, nh, rng)
        stripe = (np.floor(st[:, 1] * 4) % 2)[:, None]
        band = (np.floor(st[:, 0] * 3) % 2)[:, None]
        pts.append(p)
        cols.append(np.clip(tint * (0.7 + 0.3 * stripe) + 0.1 * band, 0, 1))
    for k in range(3):  # boxes: top and four sides
        c = np.r_[rng.uniform(0.25 * size, 0.75 * size, 2), 0.0]
        e = rng.uniform(0.25, 0.45, 3)
        rgb = rng.uniform(0.1, 1.0, 3)
        lo = c - [e[0] / 2, e[1] / 2, 0]
        faces = [(lo + [0, 0, e[2]], (e[0], 0, 0), (0, e[1], 0)),
                 (lo, (e[0], 0, 0), (0, 0, e[2])), (lo + [0, e[1], 0], (e[0], 0, 0), (0, 0, e[2])),
                 (lo, (0, e[1], 0), (0, 0, e[2])), (lo + [e[0], 0, 0], (0, e[1], 0), (0, 0, e[2]))]
        for o, u, v in faces:
            p, st = _plane(o, u, v, max(4, int(np.linalg.norm(u) / spacing)),
                           max(4, int(np.linalg.norm(v) / spacing)), rng)
            shade = 0.75 + 0.25 * (np.floor(st[:, 0] * 3) % 2)[:, None]
            pts.append(p)
            cols.append(np.clip(rgb * shade, 0, 1))
    return np.concatenate(pts).astype(np.float32), np.concatenate(cols).astype(np.float32)


def fabricate_scan(scene_id: str = "scan0", seed: int = 0, size: int = 48, num_frames: int = 12,
                   room: float = 3.0, spacing: float = 0.03, voxel: float = 0.05) -> Scene:
    """A closed textured room and ``num_frames`` RGB-D frames (``size`` x ``size`` px) from a
    ring of cameras looking across it; the points are the fused frames (``voxel`` m)."""
    rng = np.random.default_rng(seed)
    surf, surf_cols = _room_surface(rng, room, 2.0, spacing)
    inst = np.full(len(surf), -1, np.int32)
    f = size * 0.7
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    frames = []
    centre = np.array([room / 2, room / 2])
    for i in range(num_frames):
        a = 2 * np.pi * i / num_frames + rng.normal(0, 0.05)
        eye = np.r_[centre + 0.35 * room * np.array([np.cos(a), np.sin(a)]), 1.4 + rng.normal(0, 0.05)]
        target = np.r_[centre - 0.3 * room * np.array([np.cos(a + 0.4), np.sin(a + 0.4)]), 0.4]
        viewmat = look_at(eye, target)
        rgb, depth, _ = _zbuffer(surf, surf_cols, inst, K, viewmat, size, size, radius=1)
        frames.append(Frame(Camera(K, viewmat, size, size), rgb, depth, None, name=f"{i:06d}"))
    points, colors, _ = fuse_frames(frames, voxel_size=voxel)
    return Scene(scene_id, points, colors, frames, meta={"source": "liftgs.testing.scans", "seed": seed})


def _rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


def degrade_scan(scene: Scene, *, no_depth=(), zero_depth=(), exposure: dict[int, float] | None = None,
                 bad_pose: dict[int, float] | None = None, voxel: float = 0.05) -> Scene:
    """A copy of ``scene`` with real-capture faults, the cloud fused again from the result.

    ``no_depth``: frames whose depth file is missing; ``zero_depth``: frames whose depth is all
    zeros; ``exposure``: frame -> gain applied to its colours (clipped at 255); ``bad_pose``:
    frame -> degrees by which its recorded pose is rotated about the camera's vertical axis
    (the image stays what the true camera saw).
    """
    exposure, bad_pose = dict(exposure or {}), dict(bad_pose or {})
    frames = []
    for i, fr in enumerate(scene.frames):
        rgb, depth, viewmat = fr.rgb, fr.depth, fr.camera.viewmat.copy()
        if i in exposure:
            rgb = np.clip(np.round(rgb.astype(np.float64) * exposure[i]), 0, 255).astype(np.uint8)
        if i in bad_pose:
            R = _rotation((0, 1, 0), bad_pose[i])  # about the camera's y axis (image vertical)
            viewmat = np.eye(4)
            viewmat[:3, :3] = R @ fr.camera.viewmat[:3, :3]
            viewmat[:3, 3] = R @ fr.camera.viewmat[:3, 3]
        if i in no_depth:
            depth = None
        elif i in zero_depth:
            depth = np.zeros_like(fr.depth)
        cam = Camera(fr.camera.K, viewmat, fr.camera.width, fr.camera.height)
        frames.append(Frame(cam, rgb, depth, fr.instance_ids, name=fr.name))
    fusable = [f for f in frames if f.depth is not None and (f.depth > 0).any()]
    points, colors, _ = fuse_frames(fusable, voxel_size=voxel)
    return Scene(scene.scene_id, points, colors, frames, meta=dict(scene.meta))
