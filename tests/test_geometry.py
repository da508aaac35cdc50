"""liftgs.geometry: poses, projection / unprojection, fusion, voxelisation, boxes."""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.geometry import (box_from_points, box_iou, fuse_frames, invert_pose, look_at, project_points,
                             unproject_depth, voxel_downsample)
from liftgs.types import Camera, Frame

K = np.array([[20.0, 0, 8.0], [0, 22.0, 6.0], [0, 0, 1]])


def random_rigid(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = q, rng.normal(size=3)
    return T


def test_invert_pose():
    rng = np.random.default_rng(0)
    for _ in range(5):
        T = random_rigid(rng)
        np.testing.assert_allclose(invert_pose(T) @ T, np.eye(4), atol=1e-12)
        np.testing.assert_allclose(invert_pose(T), np.linalg.inv(T), atol=1e-12)


def test_look_at_opencv_axes():
    V = look_at([0, -3, 1], [0, 0, 1])  # looking along +y, z up
    R = V[:3, :3]
    np.testing.assert_allclose(R @ [1, 0, 0], [1, 0, 0], atol=1e-12)  # world x = camera right
    np.testing.assert_allclose(R @ [0, 0, 1], [0, -1, 0], atol=1e-12)  # world up = camera -y (y down)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    uv, z = project_points(np.array([[0.0, 0, 1]]), K, V)
    np.testing.assert_allclose(uv[0], K[:2, 2])  # the target lands on the principal point
    assert z[0] == pytest.approx(3.0)
    down = look_at([0, 0, 5], [0, 0, 0])  # straight down along -up: still a valid rotation
    np.testing.assert_allclose(down[:3, :3] @ down[:3, :3].T, np.eye(3), atol=1e-12)
    assert project_points(np.zeros((1, 3)), K, down)[1][0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="coincide"):
        look_at([1, 2, 3], [1, 2, 3])


def test_unproject_project_round_trip():
    rng = np.random.default_rng(1)
    H, W = 12, 16
    depth = rng.uniform(0.5, 5, (H, W)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3] = 0, np.nan, np.inf, 9.0
    V = random_rigid(rng)
    pts, pix = unproject_depth(depth, K, V, max_depth=8.0)
    assert len(pts) == H * W - 4
    uv, z = project_points(pts, K, V)
    np.testing.assert_allclose(uv, pix[:, ::-1] + 0.5, atol=1e-9)  # pixel centres at (x+0.5, y+0.5)
    np.testing.assert_allclose(z, depth[pix[:, 0], pix[:, 1]], rtol=1e-6)
    pts2, pix2 = unproject_depth(depth, K, V, stride=2)
    assert (pix2 % 2 == 0).all() and len(pts2) == 6 * 8 - 2  # (0,0) zero, (2,2) inf


def test_voxel_downsample_known_values():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.02, 0.04], [0.12, 0, 0], [0.11, 0.01, 0.0], [0.13, 0, 0]])
    cols = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=float)
    ids = np.array([3, 2, -1, 5, 5])
    p, c, i, inv = voxel_downsample(pts, 0.1, cols, ids)
    np.testing.assert_allclose(p, [[0.02, 0.015, 0.025], [0.12, 1 / 300, 0]], atol=1e-7)
    np.testing.assert_allclose(c, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1]], atol=1e-7)
    np.testing.assert_array_equal(i, [2, 5])  # tie 3 vs 2 -> smaller id; majority 5
    np.testing.assert_array_equal(inv, [0, 0, 1, 1, 1])
    assert p.dtype == np.float32 and i.dtype == np.int32
    with pytest.raises(ValueError, match="voxel_size"):
        voxel_downsample(pts, 0.0)
    with pytest.raises(ValueError, match="empty"):
        voxel_downsample(pts[:0], 0.1)


def reference_voxel_downsample(points, voxel, colors, ids):
    """Slow obvious version: a dict per voxel."""
    groups: dict[tuple, list[int]] = {}
    for n, key in enumerate(map(tuple, np.floor(points / voxel).astype(np.int64))):
        groups.setdefault(key, []).append(n)
    out_p, out_c, out_i = [], [], []
    for key in sorted(groups):
        idx = groups[key]
        out_p.append(points[idx].mean(0))
        out_c.append(colors[idx].mean(0))
        vals, counts = np.unique(ids[idx], return_counts=True)
        out_i.append(vals[np.argmax(counts)])
    return np.array(out_p), np.array(out_c), np.array(out_i)


def test_voxel_downsample_matches_reference():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-0.5, 0.5, (3000, 3))
    cols = rng.uniform(0, 1, (3000, 3))
    ids = rng.integers(-1, 4, 3000)
    p, c, i, inv = voxel_downsample(pts, 0.2, cols, ids)
    rp, rc, ri = reference_voxel_downsample(pts, 0.2, cols, ids)
    np.testing.assert_allclose(p, rp, atol=1e-6)
    np.testing.assert_allclose(c, rc, atol=1e-6)
    np.testing.assert_array_equal(i, ri)
    assert (np.floor(p[inv] / 0.2) == np.floor(pts / 0.2)).all()  # each point maps to its own voxel


def _frame(viewmat, depth, ids=None, name="f"):
    H, W = depth.shape
    rgb = np.full((H, W, 3), 255, np.uint8)
    return Frame(Camera(K, viewmat, W, H), rgb, depth.astype(np.float32), ids, name=name)


def test_fuse_frames():
    V = look_at([0, -2, 0], [0, 0, 0])
    H, W = 12, 16
    depth = np.full((H, W), 2.0)
    ids = np.zeros((H, W), np.int32)
    ids[:, W // 2:] = 7
    pts, cols, inst = fuse_frames([_frame(V, depth, ids), _frame(V, depth, ids)], voxel_size=0.05)
    np.testing.assert_allclose(pts[:, 1], 0.0, atol=1e-6)  # the plane y = 0
    np.testing.assert_allclose(cols, 1.0)
    assert set(np.unique(inst)) == {0, 7}
    np.testing.assert_array_equal(inst[pts[:, 0] < -0.03], 0)
    np.testing.assert_array_equal(inst[pts[:, 0] > 0.03], 7)
    _, _, none = fuse_frames([_frame(V, depth, ids), _frame(V, depth)])
    assert none is None  # ids only when every frame has them
    with pytest.raises(ValueError, match="empty"):
        fuse_frames([_frame(V, np.zeros((H, W)))])
    no_depth = _frame(V, depth)
    no_depth.depth = None
    with pytest.raises(ValueError, match="no depth"):
        fuse_frames([no_depth])
    near = depth.copy()
    near[:, : W // 2] = 1.0
    pts, _, _ = fuse_frames([_frame(V, near)], max_depth=1.5)  # the 2 m half is dropped
    np.testing.assert_allclose(pts[:, 1], -1.0, atol=1e-6)


def test_boxes():
    pts = np.array([[0, 0, 0], [1, 2, 3], [0.5, 1, -1.0]])
    np.testing.assert_array_equal(box_from_points(pts), [0, 0, -1, 1, 2, 3])
    a = np.array([0, 0, 0, 2, 2, 2.0])
    b = np.array([1, 1, 1, 3, 3, 3.0])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, b) == pytest.approx(1 / 15)
    assert box_iou(a, a + np.array([5, 0, 0, 5, 0, 0])) == 0.0
    assert box_iou(np.zeros(6), np.zeros(6)) == 0.0
    with pytest.raises(ValueError, match="no points"):
        box_from_points(np.zeros((0, 3)))
