"""Levelling converted scenes: every scene liftgs writes is z-up (docs/scene_format.md).

The rotation comes, in order of preference, from the data itself:

* ``axis-align``: ScanNet's ``axisAlignment`` (z up, the frame ScanRefer / ReferIt3D use);
* ``gravity``: a gravity vector (pointing down, towards the ground) — one for the whole
  capture in world coordinates (``gravity.txt``) or one per frame in that frame's camera
  coordinates (an IMU / accelerometer reading), averaged after rotating into the world;
* ``floor-plane``: the floor found in the fused points
  (:func:`liftgs.geometry.estimate_floor_plane`, hinted by the cameras' mean up axis);
* ``none``: nothing found (or asked for with ``align="none"``); the world is kept as recorded.

The applied transform is recorded in ``scene.meta["alignment"]`` (``rotation`` [3, 3],
``translation`` [3], ``source``) with ``p_aligned = rotation @ p + translation``; poses are
moved with it, so points still project into their frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.geometry import camera_up_hint, estimate_floor_plane, rotation_between
from liftgs.io.errors import DataError, DataWarning, data_error
from liftgs.types import Frame

__all__ = ["Alignment", "read_gravity", "gravity_alignment", "floor_alignment", "apply_to_frames",
           "apply_to_points"]


@dataclass
class Alignment:
    """A rigid transform into the z-up scene frame and where it came from."""

    matrix: np.ndarray  # [4, 4] raw world -> z-up world
    source: str  # "axis-align" | "gravity" | "floor-plane" | "none"
    detail: dict[str, Any] = field(default_factory=dict)  # JSON-ready extras (file, inlier count, ...)

    @classmethod
    def identity(cls, **detail: Any) -> "Alignment":
        return cls(np.eye(4), "none", dict(detail))

    def to_meta(self) -> dict[str, Any]:
        return {"rotation": self.matrix[:3, :3].tolist(), "translation": self.matrix[:3, 3].tolist(),
                "source": self.source, **self.detail}


def read_gravity(path: Path) -> np.ndarray:
    """A gravity vector [3] from a text file of three numbers: finite and non-zero."""
    try:
        g = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise data_error(path, "gravity: cannot read three numbers", exc) from exc
    if g.size != 3:
        raise DataError(f"gravity: expected 3 numbers (gx gy gz), found {g.size}", path)
    norm = float(np.linalg.norm(g))
    if not np.isfinite(g).all() or norm < 1e-9:
        raise DataError(f"gravity: {g.tolist()} must be a finite, non-zero vector", path)
    return g / norm


def _level(up: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation_between(up, [0.0, 0.0, 1.0])
    return T


def gravity_alignment(world_gravity: Path | None, frame_gravity: dict[str, Path],
                      frames: list[Frame]) -> Alignment | None:
    """From a world gravity file, else from per-frame camera-coordinate gravity files (keyed by
    frame name; frames without one are ignored); None when there is neither."""
    if world_gravity is not None:
        g = read_gravity(world_gravity)
        return Alignment(_level(-g), "gravity", {"file": world_gravity.name})
    readings = [(f, frame_gravity[f.name]) for f in frames if f.name in frame_gravity]
    if not readings:
        return None
    # camera -> world rotation is viewmat[:3, :3].T
    g = np.sum([f.camera.viewmat[:3, :3].T @ read_gravity(p) for f, p in readings], axis=0)
    if np.linalg.norm(g) < 1e-6:
        raise DataError("gravity: the per-frame gravity vectors cancel out", readings[0][1])
    return Alignment(_level(-g / np.linalg.norm(g)), "gravity", {"frames": len(readings)})


def floor_alignment(points: np.ndarray, frames: list[Frame], where: Path) -> Alignment:
    """Level ``points`` (raw world) by their floor plane; ``none`` with a warning when no floor
    is found (see :func:`liftgs.geometry.estimate_floor_plane` for the method and its limits)."""
    try:
        hint = camera_up_hint([f.camera.viewmat for f in frames])
    except ValueError:
        hint = np.array([0.0, 0.0, 1.0])
    found = estimate_floor_plane(points, up_hint=hint)
    if found is None:
        warnings.warn(f"{where}: no floor plane found; the scene is kept as recorded and may not be z-up "
                      "(add a gravity.txt to level it)", DataWarning, stacklevel=2)
        return Alignment.identity(reason="no floor plane found")
    normal, _, count = found
    tilt = float(np.degrees(np.arccos(np.clip(normal[2], -1.0, 1.0))))
    return Alignment(_level(normal), "floor-plane", {"floor_points": int(count), "tilt_deg": round(tilt, 3)})


def apply_to_frames(frames: list[Frame], alignment: Alignment) -> None:
    """Move every camera into the aligned world: c2w' = A c2w, so viewmat' = viewmat A^-1."""
    if alignment.source == "none":
        return
    inv = np.linalg.inv(alignment.matrix)
    for f in frames:
        f.camera.viewmat = f.camera.viewmat @ inv


def apply_to_points(points: np.ndarray, alignment: Alignment) -> np.ndarray:
    """``points`` [P, 3] in the aligned world (float32)."""
    if alignment.source == "none":
        return points
    A = alignment.matrix
    return (np.einsum("nj,ij->ni", points.astype(np.float64), A[:3, :3]) + A[:3, 3]).astype(np.float32)
