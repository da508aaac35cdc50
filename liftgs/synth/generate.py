"""Generate synthetic rooms: layout -> TinyRenderer frames -> fused points -> language.

The sensor point cloud is built exactly as for real scans: every rendered depth map is
unprojected with its ``K`` and pose and fused by :func:`liftgs.geometry.fuse_frames` (5 cm
voxels, paper appendix A.1), with per-point ground-truth instance ids by majority vote.
Floor and walls have instance id -1. Everything is a pure function of ``(config, seed)``.
"""

from __future__ import annotations

import numpy as np

from liftgs.config import to_dict
from liftgs.geometry import fuse_frames
from liftgs.synth.camera import intrinsics_from_fov, scan_trajectory
from liftgs.synth.config import SynthConfig
from liftgs.synth.language import caption, referring_expressions
from liftgs.synth.layout import Room, layout_room
from liftgs.synth.render import render_frames
from liftgs.types import ObjectInfo, Scene

GENERATOR_VERSION = 2  # 2: "an orange ..." articles
MIN_POINTS_FOR_LANGUAGE = 10  # objects with fewer fused points are never targets or anchors


def room_seed(seed: int, index: int) -> int:
    """The seed of room ``index`` of a dataset generated with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def _blocked(room: Room, clearance: float = 0.35):
    """Predicate: is a camera at ``eye`` inside or too close to furniture or a wall?"""
    boxes = np.stack([p.aabb for o in room.objects for p in o.parts])  # [B, 6]
    x0, y0, x1, y1 = room.bounds

    def blocked(eye: np.ndarray) -> bool:
        if not (x0 + clearance <= eye[0] <= x1 - clearance and y0 + clearance <= eye[1] <= y1 - clearance):
            return True
        gap = np.maximum(np.maximum(boxes[:, :3] - eye, eye - boxes[:, 3:]), 0.0)
        return bool((np.linalg.norm(gap, axis=1) < clearance).any())

    return blocked


def object_infos(room: Room, instance_ids: np.ndarray) -> dict[int, ObjectInfo]:
    """Per-object category and attributes (colour, size, caption, box, support, point count)."""
    counts = np.bincount(instance_ids[instance_ids >= 0], minlength=len(room.objects))
    out = {}
    for o in room.objects:
        out[o.id] = ObjectInfo(o.category, {
            "color": o.color,
            "size": o.size,
            "caption": caption(o),
            "box": [round(float(v), 6) for v in o.aabb],
            "support": int(o.support),
            "placement": o.placement,
            "yaw_deg": int(o.yaw_deg),
            "scale": round(float(o.scale), 6),
            "num_points": int(counts[o.id]),
        })
    return out


def generate_room(config: SynthConfig, seed: int, scene_id: str | None = None) -> Scene:
    """One synthetic room as a :class:`~liftgs.types.Scene` with frames, points, objects and expressions."""
    rng = np.random.default_rng(int(seed))
    room = layout_room(config, rng)
    K = intrinsics_from_fov(config.width, config.height, config.fov_deg)
    viewmats = scan_trajectory(rng, room.bounds, config.num_frames, config.camera_height,
                               config.camera_jitter, _blocked(room), floor_z=float(room.origin[2]),
                               interest=np.stack([o.center for o in room.objects]))
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
    frames = render_frames(room, viewmats, K, config.width, config.height, config.near, config.far, light)
    points, colors, inst = fuse_frames(frames, voxel_size=config.voxel_size)
    objects = object_infos(room, inst)
    eligible = {i for i, o in objects.items() if o.attributes["num_points"] >= MIN_POINTS_FOR_LANGUAGE}
    expressions = referring_expressions(room.objects, rng, eligible, config.max_expressions)
    meta = {
        "source": "synthetic",
        "generator": "liftgs.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "room_size": [round(float(v), 6) for v in room.size],
        "room_bounds": [round(float(v), 6) for v in room.bounds],  # floor xmin, ymin, xmax, ymax
        "floor_z": float(room.origin[2]),
        "wall_height": float(room.wall_height),
        "background": "floor and walls have instance id -1; depth 0 = nothing hit",
        "config": to_dict(config),
    }
    return Scene(scene_id=scene_id or f"synth_{int(seed)}", points=points, colors=colors, frames=frames,
                 instance_ids=inst, objects=objects, expressions=expressions, meta=meta)
