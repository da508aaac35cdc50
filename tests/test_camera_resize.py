"""Cameras and label / depth maps at another image size stay on one pixel grid.

Frames are loaded at a working size and pre-training renders at yet another one
(``working_size``), so ``Camera.scaled`` and the nearest-neighbour resizes must agree on the
pixel-centre convention (centres at ``x + 0.5``): a 3D point must land in the pixel that
carries its label and depth at every size, and ids / depths must never be blended.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from liftgs.io.frames import FrameFiles, load_posed_frames, resize_depth_nearest
from liftgs.io.images import write_depth_mm, write_rgb
from liftgs.recipes.pretrain_data import resize_nearest, working_size
from liftgs.types import Camera


def _rotation(seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _camera(width=640, height=480, seed=0) -> Camera:
    """Rotated, translated, fx != fy, principal point away from the image centre."""
    K = np.array([[0.8 * width, 0.0, 0.43 * width], [0.0, 1.05 * width, 0.56 * height], [0, 0, 1]])
    viewmat = np.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = _rotation(seed), [0.3, -0.7, 1.9]
    return Camera(K, viewmat, width, height)


def _pinhole(cam: Camera, points: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates [P, 2] (pixel (i, j) spans [i, i + 1) x [j, j + 1))."""
    p = points @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
    return np.stack([cam.K[0, 0] * p[:, 0] / p[:, 2] + cam.K[0, 2],
                     cam.K[1, 1] * p[:, 1] / p[:, 2] + cam.K[1, 2]], -1)


def _points_at(cam: Camera, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """World points [P, 3] that project to continuous pixel coordinates uv [P, 2]."""
    x = (uv[:, 0] - cam.K[0, 2]) / cam.K[0, 0] * depth
    y = (uv[:, 1] - cam.K[1, 2]) / cam.K[1, 1] * depth
    cam_pts = np.stack([x, y, depth], -1)
    R, t = cam.viewmat[:3, :3], cam.viewmat[:3, 3]
    return (cam_pts - t) @ R  # R^T (p - t)


@pytest.mark.parametrize("size", [(160, 120), (128, 96), (200, 90), (1280, 960), (97, 61)])
def test_scaled_camera_maps_points_to_the_corresponding_pixel(size):
    cam = _camera()
    W, H = size
    small = cam.scaled(W, H)
    assert (small.width, small.height) == (W, H)
    np.testing.assert_array_equal(small.viewmat, cam.viewmat)
    rng = np.random.default_rng(1)
    uv = rng.uniform([0, 0], [640, 480], size=(500, 2))
    pts = _points_at(cam, uv, rng.uniform(0.5, 6.0, 500))
    np.testing.assert_allclose(_pinhole(cam, pts), uv, atol=1e-9)
    # continuous image coordinates scale with the image: (u, v) -> (u W'/W, v H'/H)
    got = _pinhole(small, pts)
    np.testing.assert_allclose(got, uv * [W / 640, H / 480], atol=1e-9)
    # so a point lands in the small pixel that covers its large pixel's position
    np.testing.assert_array_equal(np.floor(got), np.floor(uv * [W / 640, H / 480]))


def test_scaled_camera_pixel_centres_by_hand():
    """4x down: the centre of large block [4i, 4i + 4) (coordinate 4i + 2) is small pixel i's
    centre (i + 0.5); a -0.5 offset convention would put it at i + 0.375."""
    cam = _camera()
    small = cam.scaled(160, 120)
    assert small.K[0, 0] == pytest.approx(cam.K[0, 0] / 4)
    assert small.K[1, 1] == pytest.approx(cam.K[1, 1] / 4)
    assert small.K[0, 2] == pytest.approx(0.43 * 640 / 4)  # cx' = cx s, not (cx + 0.5) s - 0.5
    assert small.K[1, 2] == pytest.approx(0.56 * 480 / 4)
    np.testing.assert_array_equal(small.K[2], [0, 0, 1])
    i, j = np.array([0, 7, 159]), np.array([0, 44, 119])
    pts = _points_at(cam, np.stack([4 * i + 2.0, 4 * j + 2.0], -1), np.array([1.0, 2.5, 4.0]))
    np.testing.assert_allclose(_pinhole(small, pts), np.stack([i + 0.5, j + 0.5], -1), atol=1e-9)
    # round trip back to the original size gives the original intrinsics
    np.testing.assert_allclose(small.scaled(640, 480).K, cam.K, atol=1e-12)


def test_scaled_camera_aspect_change_scales_each_axis():
    cam = _camera()
    wide = cam.scaled(320, 120)  # x by 1/2, y by 1/4
    np.testing.assert_allclose(wide.K[0], cam.K[0] / 2)
    np.testing.assert_allclose(wide.K[1], cam.K[1] / 4)


@pytest.mark.parametrize("w,h,size,want", [(640, 480, 128, (128, 96)), (480, 640, 128, (96, 128)),
                                           (1296, 968, 160, (160, 120)), (64, 64, 32, (32, 32)),
                                           (1000, 1, 10, (10, 1)), (40, 30, 80, (80, 60))])
def test_working_size_keeps_the_aspect(w, h, size, want):
    got = working_size(w, h, size)
    assert got == want
    assert max(got) == size
    assert abs(got[0] / got[1] - w / h) <= (w / h) / min(got)  # within a pixel's rounding


def _blocks(width: int, height: int, bw: int, bh: int) -> np.ndarray:
    """Label map whose id is the (bw x bh) block a pixel belongs to; ids not contiguous."""
    ys, xs = np.mgrid[0:height, 0:width]
    return ((ys // bh) * 1000 + (xs // bw) * 7 + 3).astype(np.int32)


@pytest.mark.parametrize("resize", [resize_nearest, resize_depth_nearest], ids=["labels", "depth"])
def test_nearest_resize_keeps_ids_and_blocks(resize):
    src = _blocks(64, 48, 4, 4)
    arr = src.astype(np.float32) if resize is resize_depth_nearest else src
    out = resize(arr, 16, 12)  # 4x down: one small pixel per block
    assert out.shape == (12, 16)
    np.testing.assert_array_equal(out, _blocks(16, 12, 1, 1))
    out = resize(arr, 32, 12)  # 2x down in x, 4x in y: every block appears twice in x
    np.testing.assert_array_equal(out, _blocks(32, 12, 2, 1))
    out = resize(arr, 128, 96)  # up: each id replicated, none invented
    np.testing.assert_array_equal(out, _blocks(128, 96, 8, 8))
    # odd source sizes, so no small pixel centre falls on a large pixel's edge (no ties)
    src = _blocks(63, 45, 3, 5)
    out = resize(src.astype(arr.dtype), 23, 17)
    assert set(np.unique(out)) <= set(np.unique(src))  # only source ids, no blending
    # nearest at pixel centres: small pixel (i, j) takes large pixel floor((i + 0.5) * 45 / 17)
    ys = np.floor((np.arange(17) + 0.5) * 45 / 17).astype(int)
    xs = np.floor((np.arange(23) + 0.5) * 63 / 23).astype(int)
    np.testing.assert_array_equal(out, src[ys][:, xs])


def test_label_under_a_point_is_the_same_at_both_sizes():
    """A disc label drawn at 640x480 around a 3D point's projection, resized to the working
    size, still covers that point's pixel under the scaled camera."""
    cam = _camera()
    W, H = working_size(640, 480, 96)
    small = cam.scaled(W, H)
    rng = np.random.default_rng(2)
    ys, xs = np.mgrid[0:480, 0:640] + 0.5
    for _ in range(20):
        uv = rng.uniform([40, 40], [600, 440], size=(1, 2))
        pt = _points_at(cam, uv, rng.uniform(1.0, 5.0, 1))
        label = np.where((xs - uv[0, 0]) ** 2 + (ys - uv[0, 1]) ** 2 <= 12.0**2, 5, -1)
        small_label = resize_nearest(label, W, H)
        u, v = np.floor(_pinhole(small, pt)[0]).astype(int)
        assert small_label[v, u] == 5
        assert set(np.unique(small_label)) == {-1, 5}


def test_loaded_frames_share_one_grid(tmp_path):
    """load_posed_frames: depth and colour of other sizes resized to the working size with K
    scaled; a point back-projected from a working pixel lands in the depth pixel it came from."""
    dw, dh = 80, 60
    K_depth = np.array([[70.0, 0, 33.0], [0, 75.0, 27.5], [0, 0, 1]])
    blocks = _blocks(dw, dh, 2, 2)
    depth = 1.0 + (blocks % 997) * 0.002  # constant on 2x2 blocks, distinct per block
    write_depth_mm(tmp_path / "d.png", depth)
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, 80:] = 200  # right half bright, at twice the depth resolution
    write_rgb(tmp_path / "c.png", rgb)
    c2w = np.linalg.inv(_camera(seed=4).viewmat)
    np.savetxt(tmp_path / "pose.txt", c2w)
    files = [FrameFiles("f0", tmp_path / "c.png", tmp_path / "d.png", tmp_path / "pose.txt")]
    (frame,) = load_posed_frames(files, K_depth, work_size=(40, 30), progress=False)
    cam = frame.camera
    assert (cam.width, cam.height) == (40, 30) and frame.rgb.shape == (30, 40, 3)
    np.testing.assert_allclose(cam.K, [[35.0, 0, 16.5], [0, 37.5, 13.75], [0, 0, 1]])
    np.testing.assert_allclose(cam.viewmat, _camera(seed=4).viewmat, atol=1e-12)
    stored = np.round(depth * 1000) / 1000
    assert set(np.unique(frame.depth)) <= set(np.unique(stored.astype(np.float32)))
    np.testing.assert_array_equal(frame.depth, stored.astype(np.float32)[1::2, 1::2])
    assert (frame.rgb[:, :19] == 0).all() and (frame.rgb[:, 21:] == 200).all()
    original = Camera(K_depth, cam.viewmat, dw, dh)
    ys, xs = np.mgrid[0:30, 0:40]
    uv = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], -1)
    pts = _points_at(cam, uv, frame.depth.ravel().astype(np.float64))
    back = np.floor(_pinhole(original, pts) + 1e-9).astype(int)
    # the working pixel centre is the corner shared by its 2x2 depth block: same depth there
    np.testing.assert_allclose(stored[back[:, 1], back[:, 0]], frame.depth.ravel(), atol=1e-6)
    assert math.isclose(float(frame.depth[0, 0]), float(stored[1, 1]), abs_tol=1e-6)
