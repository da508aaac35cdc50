"""Cameras for pybullet's TinyRenderer in our conventions, and the scan-like trajectory.

pybullet takes OpenGL matrices (camera looks down -z, y up, column-major lists). We keep the
library's conventions (``viewmat`` world->camera with OpenCV axes, ``K`` with pixel centres at
``(x + 0.5, y + 0.5)``) and convert exactly. Measured on pybullet 3.2.7: TinyRenderer samples
image row ``y`` (top origin) and column ``x`` at normalised device coordinates
``x_ndc = 2 x / W - 1`` and ``y_ndc = 1 - 2 (y + 1) / H`` -- i.e. at pixel *corners* of its
bottom-up raster, not at pixel centres. :func:`projection_from_intrinsics` folds that offset
into the projection matrix so that any ``K`` (including ``cx = W/2, cy = H/2``) is honoured to
floating-point precision; ``tests/test_synth_camera.py`` checks it against analytic planes.
"""

from __future__ import annotations

import numpy as np

from liftgs.geometry import look_at

__all__ = [
    "intrinsics_from_fov",
    "projection_from_intrinsics",
    "intrinsics_from_projection",
    "gl_view_from_viewmat",
    "viewmat_from_gl_view",
    "depth_from_buffer",
    "scan_trajectory",
]

_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z between OpenCV and OpenGL cameras


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    """Pinhole ``K`` [3, 3] with square pixels, vertical field of view and the principal point at the centre."""
    f = 0.5 * height / np.tan(np.deg2rad(fov_y_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def projection_from_intrinsics(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL projection [4, 4] (row-major) that makes TinyRenderer render exactly the camera ``K``.

    Derivation: a camera point (X, Y, Z) in OpenCV axes lands on pixel centre
    ``u = fx X/Z + cx``; TinyRenderer samples column ``x`` at ``x_ndc = 2x/W - 1`` with
    ``x_ndc = P00 X/Z - P02`` (because ``z_gl = -Z``). Matching both for every ``x`` gives
    ``P00 = 2 fx / W`` and ``P02 = 1 + (1 - 2 cx) / W``; rows are flipped, so
    ``P11 = 2 fy / H`` and ``P12 = -1 + (1 + 2 cy) / H``.
    """
    K = np.asarray(K, dtype=np.float64)
    if abs(K[0, 1]) > 1e-12:
        raise ValueError("TinyRenderer cameras cannot have skew: K[0, 1] must be 0")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    P = np.zeros((4, 4))
    P[0, 0] = 2 * fx / width
    P[0, 2] = 1 + (1 - 2 * cx) / width
    P[1, 1] = 2 * fy / height
    P[1, 2] = -1 + (1 + 2 * cy) / height
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = -1.0
    return P


def intrinsics_from_projection(P: np.ndarray, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`projection_from_intrinsics`: our ``K`` [3, 3] from an OpenGL projection.

    Accepts the row-major matrix or pybullet's flat column-major list of 16.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.shape == (16,):
        P = P.reshape(4, 4).T
    fx, fy = P[0, 0] * width / 2, P[1, 1] * height / 2
    cx = (1 + width * (1 - P[0, 2])) / 2
    cy = (height * (1 + P[1, 2]) - 1) / 2
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def gl_view_from_viewmat(viewmat: np.ndarray) -> np.ndarray:
    """OpenGL view matrix [4, 4] (camera looks down -z, y up) from our OpenCV ``viewmat``."""
    return _CV_TO_GL @ np.asarray(viewmat, dtype=np.float64)


def viewmat_from_gl_view(gl_view: np.ndarray) -> np.ndarray:
    """Our world->camera OpenCV ``viewmat`` from an OpenGL view matrix (row-major or pybullet's list)."""
    V = np.asarray(gl_view, dtype=np.float64)
    if V.shape == (16,):
        V = V.reshape(4, 4).T
    return _CV_TO_GL @ V


def depth_from_buffer(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth (distance along the optical axis) from the non-linear OpenGL depth buffer in [0, 1]."""
    d = np.asarray(buffer, dtype=np.float64)
    return far * near / (far - (far - near) * d)


def scan_trajectory(
    rng: np.random.Generator,
    bounds: np.ndarray,
    num_frames: int,
    height: float,
    jitter: float,
    blocked: "callable",
    floor_z: float = 0.0,
    interest: np.ndarray | None = None,
) -> list[np.ndarray]:
    """World->camera poses of a person walking once around the room, looking across it.

    The eye moves on an ellipse at ~45% of the half extents (one loop, random start and
    direction), at ``height`` +- jitter, and looks at a point on the far side of the room at
    table height, so every wall and the furniture against it is seen from a few directions --
    the way ScanNet scans sweep a room. ``blocked(eye) -> bool`` rejects eyes inside or too close
    to furniture; such eyes are pulled towards the room centre. With ``interest`` points
    (object centres) the camera aims at one of them when one lies roughly ahead.
    """
    W, D = bounds[2] - bounds[0], bounds[3] - bounds[1]  # floor rectangle xmin, ymin, xmax, ymax
    centre = np.array([(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2])
    start, direction = rng.uniform(0, 2 * np.pi), rng.choice([-1.0, 1.0])
    poses = []
    for i in range(num_frames):
        a = start + direction * 2 * np.pi * i / num_frames + rng.normal(0, 0.05)
        ring = np.array([np.cos(a), np.sin(a)])
        for shrink in np.linspace(1.0, 0.0, 11):
            xy = centre + shrink * 0.45 * np.array([W / 2, D / 2]) * ring + rng.normal(0, jitter, 2)
            eye = np.array([xy[0], xy[1], floor_z + height + rng.normal(0, jitter)])
            if not blocked(eye):
                break
        else:  # the whole ray to the centre is blocked (e.g. a floor lamp there): anywhere free
            for _ in range(100):
                xy = bounds[:2] + rng.uniform(0, 1, 2) * np.array([W, D])
                eye = np.array([xy[0], xy[1], floor_z + height])
                if not blocked(eye):
                    break
        look_a = a + np.pi + rng.normal(0, 0.35)
        target_xy = centre + 0.55 * np.array([W / 2, D / 2]) * np.array([np.cos(look_a), np.sin(look_a)])
        target = np.array([target_xy[0], target_xy[1], floor_z + rng.uniform(0.3, 0.8)])
        target = _look_at_something(rng, eye, target, interest)
        poses.append(look_at(eye, target))
    return poses


def _look_at_something(rng: np.random.Generator, eye: np.ndarray, default: np.ndarray,
                       interest: np.ndarray | None) -> np.ndarray:
    """Like a person scanning a room, aim at an object roughly across the room when there is one.

    ``interest`` [M, 3] holds object centres; candidates lie within 50 degrees of the default
    viewing direction and at least 0.8 m away. Returns the chosen target (jittered) or ``default``.
    """
    if interest is None or len(interest) == 0:
        return default
    ahead = default[:2] - eye[:2]
    rel = interest[:, :2] - eye[:2]
    dist = np.linalg.norm(rel, axis=1)
    cos = rel @ ahead / np.maximum(dist * np.linalg.norm(ahead), 1e-9)
    candidates = np.flatnonzero((cos > np.cos(np.deg2rad(50))) & (dist > 0.8))
    if candidates.size == 0:
        return default
    return interest[rng.choice(candidates)] + rng.normal(0, 0.12, 3)
