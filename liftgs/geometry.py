"""Geometry shared by readers, the synthetic benchmark and evaluation.

Pose conventions are those of :mod:`liftgs.types`: ``viewmat`` maps world to camera (OpenCV
axes: x right, y down, z forward), pixel centres at ``(x + 0.5, y + 0.5)``. The paper builds
its inputs exactly this way (appendix A.1): RGB-D frames are unprojected with their depth,
fused, and voxel-downsampled to 5 cm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from liftgs.types import Frame

__all__ = [
    "invert_pose",
    "look_at",
    "project_points",
    "unproject_depth",
    "fuse_frames",
    "voxel_downsample",
    "box_from_points",
    "box_iou",
    "rotation_between",
    "camera_up_hint",
    "fit_plane",
    "estimate_floor_plane",
]


def _rigid(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``points @ R.T + t`` for points [N, 3]. einsum, not ``@``: numpy hands [N, 3] x [3, 3]
    to multi-threaded OpenBLAS, which is far slower than this loop on a busy small CPU."""
    return np.einsum("nj,ij->ni", points, R) + t


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (camera->world <-> world->camera)."""
    T = np.asarray(T, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 0, 1)) -> np.ndarray:
    """World->camera ``viewmat`` [4, 4] of a camera at ``eye`` looking at ``target`` (OpenCV axes)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-12:
        raise ValueError(f"look_at: eye and target coincide at {eye.tolist()}; the view direction is undefined")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:  # looking straight along `up`: pick any perpendicular axis
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return invert_pose(c2w)


def project_points(points: np.ndarray, K: np.ndarray, viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points [P, 3] to pixel coordinates [P, 2] (continuous) and camera depth [P]."""
    pts = np.asarray(points, dtype=np.float64)
    cam = _rigid(pts, viewmat[:3, :3], viewmat[:3, 3])
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = _rigid(cam, np.asarray(K, dtype=np.float64), np.zeros(3))[:, :2] / z[:, None]
    return uv, z


def unproject_depth(
    depth: np.ndarray, K: np.ndarray, viewmat: np.ndarray, stride: int = 1, max_depth: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """World points of the valid depth pixels.

    Returns ``points`` [M, 3] float64 and ``pix`` [M, 2] int (row, col) of each point's pixel.
    A pixel is valid when its depth is finite, > 0 and <= ``max_depth``.
    """
    H, W = depth.shape
    rows, cols = np.mgrid[0:H:stride, 0:W:stride]
    d = depth[rows, cols].astype(np.float64)
    valid = np.isfinite(d) & (d > 0) & (d <= max_depth)
    rows, cols, d = rows[valid], cols[valid], d[valid]
    K = np.asarray(K, dtype=np.float64)
    x = (cols + 0.5 - K[0, 2]) / K[0, 0] * d
    y = (rows + 0.5 - K[1, 2]) / K[1, 1] * d
    cam = np.stack([x, y, d], axis=1)
    c2w = invert_pose(viewmat)
    world = _rigid(cam, c2w[:3, :3], c2w[:3, 3])
    return world, np.stack([rows, cols], axis=1)


def fuse_frames(
    frames: Sequence[Frame],
    voxel_size: float = 0.05,
    stride: int = 1,
    max_depth: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fuse RGB-D frames into a sensor point cloud (unproject every frame, then voxelise).

    Returns ``points`` [P, 3] float32, ``colors`` [P, 3] float32 in [0, 1] and, when every
    frame carries ``instance_ids``, per-point instance ids [P] int32 by majority vote.
    """
    pts, cols, ids = [], [], []
    with_ids = len(frames) > 0 and all(f.instance_ids is not None for f in frames)
    for f in frames:
        if f.depth is None:
            raise ValueError(f"frame {f.name!r} has no depth: cannot fuse it into a point cloud")
        p, pix = unproject_depth(f.depth, f.camera.K, f.camera.viewmat, stride=stride, max_depth=max_depth)
        pts.append(p)
        cols.append(f.rgb[pix[:, 0], pix[:, 1]].astype(np.float32) / 255.0)
        if with_ids:
            ids.append(f.instance_ids[pix[:, 0], pix[:, 1]].astype(np.int32))
    if not pts or sum(len(p) for p in pts) == 0:
        raise ValueError("no valid depth in any frame: the fused point cloud would be empty")
    points = np.concatenate(pts)
    colors = np.concatenate(cols)
    inst = np.concatenate(ids) if with_ids else None
    points, colors, inst, _ = voxel_downsample(points, voxel_size, colors, inst)
    return points, colors, inst


def voxel_downsample(
    points: np.ndarray,
    voxel_size: float = 0.05,
    colors: np.ndarray | None = None,
    instance_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """One point per occupied voxel: the mean position and mean colour of its points.

    Instance ids are decided by majority vote inside the voxel (ties go to the smaller id;
    -1 votes like any other id). Returns ``(points [V, 3] float32, colors [V, 3] | None,
    instance_ids [V] int32 | None, inverse [P])`` where ``inverse`` maps each input point to
    its voxel. Voxels are ordered by their integer coordinates, so the output is deterministic.
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    points = np.asarray(points, dtype=np.float64)
    if points.shape[0] == 0:
        raise ValueError("voxel_downsample: the point cloud is empty")
    keys = np.floor(points / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    span = keys.max(axis=0) + 1
    if float(np.prod(span.astype(np.float64))) < 2.0**62:  # one int64 per voxel, same (x, y, z) order
        keys = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]  # 1-D unique is much faster than axis=0
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    V = counts.shape[0]

    def mean(values: np.ndarray) -> np.ndarray:
        # bincount sums in input order like np.add.at (bit-identical), and faster
        out = np.stack([np.bincount(inverse, weights=values[:, c], minlength=V)
                        for c in range(values.shape[1])], axis=1)
        return out / counts[:, None]

    out_pts = mean(points).astype(np.float32)
    out_cols = mean(np.asarray(colors, dtype=np.float64)).astype(np.float32) if colors is not None else None
    out_ids = None
    if instance_ids is not None:
        ids = np.asarray(instance_ids, dtype=np.int64)
        uniq, id_idx = np.unique(ids, return_inverse=True)
        U = len(uniq)
        votes = np.bincount(inverse * U + id_idx.reshape(-1), minlength=V * U).reshape(V, U)
        out_ids = uniq[np.argmax(votes, axis=1)].astype(np.int32)  # argmax: first (smallest id) on ties
    return out_pts, out_cols, out_ids, inverse


def box_from_points(points: np.ndarray) -> np.ndarray:
    """Axis-aligned box [6] = (xmin, ymin, zmin, xmax, ymax, zmax) of points [P, 3]."""
    points = np.asarray(points)
    if points.shape[0] == 0:
        raise ValueError("box_from_points: no points")
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two axis-aligned boxes in (min, max) form."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = np.clip(np.minimum(a[3:], b[3:]) - np.maximum(a[:3], b[:3]), 0, None).prod()
    vol_a = np.clip(a[3:] - a[:3], 0, None).prod()
    vol_b = np.clip(b[3:] - b[:3], 0, None).prod()
    union = vol_a + vol_b - inter
    return float(inter / union) if union > 0 else 0.0


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] taking direction ``a`` onto direction ``b`` (Rodrigues).

    Used to level a scene: the rotation turns the measured up direction onto +z and leaves
    the heading (rotation about z) as recorded.
    """
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def camera_up_hint(viewmats: Sequence[np.ndarray]) -> np.ndarray:
    """Mean "up" of the cameras in world coordinates [3] (unit): the average of each camera's
    -y axis (OpenCV y points down). Hand-held and robot captures keep the camera roughly
    upright, so this is a rough gravity estimate that only has to pick the floor out of the
    candidate planes (:func:`estimate_floor_plane`)."""
    ups = [-np.asarray(V, dtype=np.float64)[1, :3] for V in viewmats]  # row 1 of R_w2c = camera y in world
    if not ups:
        raise ValueError("camera_up_hint: no cameras")
    up = np.mean(ups, axis=0)
    n = np.linalg.norm(up)
    if n < 1e-6:
        raise ValueError("camera_up_hint: the cameras' up axes cancel out; no dominant up direction")
    return up / n


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane of points [P, 3] (P >= 3): unit normal [3] and offset ``d`` with
    ``points @ normal ~= d`` (the normal's sign is arbitrary)."""
    pts = np.asarray(points, dtype=np.float64)
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    normal = vt[2]
    return normal, float(normal @ centre)


def _ransac_plane(pts: np.ndarray, up: np.ndarray, cos_tilt: float, inlier_dist: float, iterations: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Best near-horizontal plane of ``pts`` by RANSAC, refined by least squares on its inliers."""
    P = pts.shape[0]
    tri = pts[rng.integers(0, P, size=(iterations, 3))]  # [I, 3, 3]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-9
    normals, tri = normals[ok] / length[ok, None], tri[ok]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    keep = normals @ up >= cos_tilt
    normals, tri = normals[keep], tri[keep]
    if len(normals) == 0:
        return None
    offsets = np.einsum("ij,ij->i", normals, tri[:, 0])
    support = np.stack([(np.abs(pts @ n - d) < inlier_dist).sum() for n, d in zip(normals, offsets)])
    normal, offset = normals[int(np.argmax(support))], offsets[int(np.argmax(support))]
    for _ in range(2):  # least-squares refinement on the inliers
        inliers = np.abs(pts @ normal - offset) < inlier_dist
        if inliers.sum() < 3:
            return None
        normal, offset = fit_plane(pts[inliers])
        if normal @ up < 0:
            normal, offset = -normal, -offset
    inliers = np.abs(pts @ normal - offset) < inlier_dist
    return (normal, offset, inliers) if normal @ up >= cos_tilt else None


def estimate_floor_plane(
    points: np.ndarray,  # [P, 3]
    up_hint: Sequence[float] = (0.0, 0.0, 1.0),
    max_tilt_deg: float = 30.0,
    inlier_dist: float = 0.03,
    iterations: int = 300,
    max_planes: int = 4,
    min_support: float = 0.03,
    max_below: float = 0.05,
    max_points: int = 20000,
    seed: int = 0,
) -> tuple[np.ndarray, float, int] | None:
    """The floor of an indoor point cloud: ``(normal [3] pointing up, offset, inlier count)``
    with ``points @ normal ~= offset`` on the floor, or None when no floor is found.

    Method: sequential RANSAC finds up to ``max_planes`` planes whose normal lies within
    ``max_tilt_deg`` of ``up_hint`` (each holding at least ``min_support`` of the points, each
    refined by least squares on its inliers). The floor is the largest of them with almost
    nothing below it (at most ``max_below`` of the points more than ``2 * inlier_dist`` under
    the plane): table tops have the floor below them, the ceiling has the room below it.

    Limits: ``up_hint`` must be within ``max_tilt_deg`` of the true up (a camera-derived hint,
    :func:`camera_up_hint`, is for upright captures); when no floor is visible the largest
    horizontal surface with nothing seen below it (e.g. a desk top) is returned, which is
    still level; a sloped floor or ramp comes back as it is sloped. Deterministic for a
    given ``seed``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"estimate_floor_plane: points must be [P, 3], got {list(pts.shape)}")
    rng = np.random.default_rng(seed)
    if pts.shape[0] > max_points:
        pts = pts[np.sort(rng.choice(pts.shape[0], max_points, replace=False))]
    P = pts.shape[0]
    if P < 3:
        return None
    up = np.asarray(up_hint, dtype=np.float64)
    up = up / np.linalg.norm(up)
    cos_tilt = float(np.cos(np.deg2rad(max_tilt_deg)))
    remaining = np.ones(P, dtype=bool)
    best = None
    for _ in range(max_planes):
        if remaining.sum() < max(3, min_support * P):
            break
        idx = np.flatnonzero(remaining)
        found = _ransac_plane(pts[idx], up, cos_tilt, inlier_dist, iterations, rng)
        if found is None:
            break
        normal, offset, inliers = found
        count = int(inliers.sum())
        if count < min_support * P:
            break
        remaining[idx[inliers]] = False
        below = float(np.mean(pts @ normal < offset - 2 * inlier_dist))
        if below <= max_below and (best is None or count > best[2]):
            best = (normal, offset, count)
    return best
