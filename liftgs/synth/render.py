"""Render a laid-out room with pybullet's TinyRenderer (CPU, headless) into RGB-D frames.

Each primitive part is its own pybullet body; a lookup table maps body ids back to instance
ids. Segmentation uses ``ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX`` (pixel value =
``uid + ((link + 1) << 24)``, -1 where nothing is hit); bodies here have only a base link, so
the low 24 bits are the body id. **Floor and walls get instance id -1** ("no object"), like
ScanNet's instance benchmark that leaves wall and floor out; their depth is valid. Pixels that
see nothing (above the walls) have depth 0 (invalid) and instance -1.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from liftgs.synth.camera import depth_from_buffer, gl_view_from_viewmat, projection_from_intrinsics
from liftgs.synth.layout import Room
from liftgs.types import Camera, Frame

WALL_THICKNESS = 0.1


def _import_pybullet():
    """Import pybullet without its "pybullet build time" banner (it would pollute CLI output)."""
    import sys

    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            import pybullet

            ctypes.CDLL(None).fflush(None)  # flush C stdio buffers while they still point at devnull
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    return pybullet


@contextmanager
def pybullet_client():
    """A private DIRECT (headless) pybullet connection, closed on exit."""
    pb = _import_pybullet()

    cid = pb.connect(pb.DIRECT)
    if cid < 0:
        raise RuntimeError("pybullet could not open a DIRECT connection")
    try:
        yield pb, cid
    finally:
        pb.disconnect(physicsClientId=cid)


def _add_body(pb, cid: int, shape: str, dims, center, rgb) -> int:
    rgba = [float(c) for c in rgb] + [1.0]
    if shape == "box":
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[float(d) for d in dims], rgbaColor=rgba,
                                   physicsClientId=cid)
    elif shape == "cylinder":
        vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=float(dims[0]), length=2 * float(dims[1]),
                                   rgbaColor=rgba, physicsClientId=cid)
    elif shape == "sphere":
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=float(dims[0]), rgbaColor=rgba, physicsClientId=cid)
    else:
        raise ValueError(f"unknown primitive shape {shape!r}")
    return pb.createMultiBody(baseMass=0, baseVisualShapeIndex=vis, basePosition=[float(c) for c in center],
                              physicsClientId=cid)


def build_world(pb, cid: int, room: Room) -> np.ndarray:
    """Create the room's bodies; returns the lookup body uid -> instance id [num_bodies] (-1 = room shell)."""
    W, D = room.size
    H, t = room.wall_height, WALL_THICKNESS
    lut: dict[int, int] = {}
    shell = [
        ((W / 2 + t, D / 2 + t, t / 2), (W / 2, D / 2, -t / 2), room.floor_rgb),
        ((W / 2 + t, t / 2, H / 2), (W / 2, -t / 2, H / 2), room.wall_rgb),
        ((W / 2 + t, t / 2, H / 2), (W / 2, D + t / 2, H / 2), room.wall_rgb),
        ((t / 2, D / 2 + t, H / 2), (-t / 2, D / 2, H / 2), room.wall_rgb),
        ((t / 2, D / 2 + t, H / 2), (W + t / 2, D / 2, H / 2), room.wall_rgb),
    ]
    for dims, center, rgb in shell:
        lut[_add_body(pb, cid, "box", dims, np.asarray(center) + room.origin, rgb)] = -1
    for obj in room.objects:
        for part in obj.parts:
            lut[_add_body(pb, cid, part.shape, part.dims, part.center, part.rgb)] = obj.id
    table = np.full(max(lut) + 1, -1, dtype=np.int32)
    for uid, inst in lut.items():
        table[uid] = inst
    return table


def render_frames(
    room: Room,
    viewmats: Sequence[np.ndarray],
    K: np.ndarray,
    width: int,
    height: int,
    near: float,
    far: float,
    light_direction: Sequence[float] = (0.4, -0.3, 1.0),
) -> list[Frame]:
    """RGB [H, W, 3] uint8, metric depth [H, W] float32 and instance ids [H, W] int32 per pose."""
    proj = projection_from_intrinsics(K, width, height, near, far).T.reshape(-1).tolist()
    frames = []
    with pybullet_client() as (pb, cid):
        lut = build_world(pb, cid, room)
        for i, viewmat in enumerate(viewmats):
            view = gl_view_from_viewmat(viewmat).T.reshape(-1).tolist()
            _, _, rgba, buf, seg = pb.getCameraImage(
                width, height, viewMatrix=view, projectionMatrix=proj, renderer=pb.ER_TINY_RENDERER,
                flags=pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX, lightDirection=list(light_direction),
                physicsClientId=cid)
            rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()
            seg = np.asarray(seg, dtype=np.int64).reshape(height, width)
            hit = seg >= 0
            uid = np.where(hit, seg & ((1 << 24) - 1), 0)
            inst = np.where(hit, lut[np.clip(uid, 0, len(lut) - 1)], -1).astype(np.int32)
            depth = depth_from_buffer(np.asarray(buf).reshape(height, width), near, far)
            depth = np.where(hit, depth, 0.0).astype(np.float32)
            camera = Camera(K=K, viewmat=viewmat, width=width, height=height)
            frames.append(Frame(camera=camera, rgb=rgb, depth=depth, instance_ids=inst, name=f"{i:06d}"))
    return frames
