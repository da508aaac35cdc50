"""Consistency checks of generated rooms (used by the tests and the benchmark).

The main check: project every fused point into every frame and compare it
with what the renderer saw there. A point is **visible** in a frame when it projects inside
the image, lies in front of the camera (z > 0), its pixel has valid depth ``d`` and it is not
occluded, i.e. ``z <= d + occlusion_margin`` (a point more than 10 cm behind the rendered
surface is hidden by it). Among visible points we count how many have ``|z - d| <= depth_tol``
(depth agreement) and how many carry the instance id of their pixel (instance agreement).
Points floating in front of the surface count as disagreements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftgs.geometry import project_points
from liftgs.types import Scene


@dataclass
class Agreement:
    visible: int  # (point, frame) pairs that are visible
    depth_agree: int  # ... whose depth matches the rendered depth within depth_tol
    instance_agree: int  # ... whose instance id matches the rendered instance image

    @property
    def depth_ratio(self) -> float:
        return self.depth_agree / max(self.visible, 1)

    @property
    def instance_ratio(self) -> float:
        return self.instance_agree / max(self.visible, 1)


def projection_agreement(scene: Scene, depth_tol: float = 0.05, occlusion_margin: float = 0.10) -> Agreement:
    """Agreement of the scene's points with every frame's rendered depth and instance image."""
    if scene.instance_ids is None:
        raise ValueError(f"scene {scene.scene_id} has no per-point instance ids")
    visible = depth_ok = inst_ok = 0
    for frame in scene.frames:
        if frame.depth is None or frame.instance_ids is None:
            raise ValueError(f"scene {scene.scene_id} frame {frame.name!r} lacks depth or instance ids")
        cam = frame.camera
        uv, z = project_points(scene.points, cam.K, cam.viewmat)
        ok = np.isfinite(uv).all(axis=1) & (z > 0)
        col = np.floor(np.where(ok, uv[:, 0], -1)).astype(np.int64)
        row = np.floor(np.where(ok, uv[:, 1], -1)).astype(np.int64)
        ok &= (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
        idx = np.flatnonzero(ok)
        d = frame.depth[row[idx], col[idx]].astype(np.float64)
        vis = (d > 0) & (z[idx] <= d + occlusion_margin)
        idx, d = idx[vis], d[vis]
        visible += idx.size
        depth_ok += int((np.abs(z[idx] - d) <= depth_tol).sum())
        inst_ok += int((frame.instance_ids[row[idx], col[idx]] == scene.instance_ids[idx]).sum())
    return Agreement(visible, depth_ok, inst_ok)
