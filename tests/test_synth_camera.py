"""pybullet <-> liftgs camera conversion: exact K and world->camera viewmat."""

import numpy as np
import pytest

from liftgs.geometry import look_at, project_points
from liftgs.synth.camera import (depth_from_buffer, gl_view_from_viewmat, intrinsics_from_fov,
                                 intrinsics_from_projection, projection_from_intrinsics, viewmat_from_gl_view)
from liftgs.synth.catalog import Part
from liftgs.synth.layout import PlacedObject, Room
from liftgs.synth.render import render_frames


def _empty_room(objects=()):
    return Room(size=(4.0, 3.0), wall_height=2.5, floor_rgb=(0.6, 0.5, 0.4), wall_rgb=(0.8, 0.8, 0.8),
                objects=list(objects))


def _analytic_depth(room: Room, K, viewmat, W, H):
    """Depth of the first floor/wall plane hit by the ray through each pixel centre."""
    ys, xs = np.mgrid[0:H, 0:W]
    rays = np.stack([(xs + 0.5 - K[0, 2]) / K[0, 0], (ys + 0.5 - K[1, 2]) / K[1, 1], np.ones((H, W))], -1)
    c2w = np.linalg.inv(viewmat)
    dirs, eye = rays @ c2w[:3, :3].T, c2w[:3, 3]
    x0, y0, x1, y1 = room.bounds
    z0 = room.origin[2]
    best = np.full((H, W), np.inf)
    for axis, value in [(2, z0), (0, x0), (0, x1), (1, y0), (1, y1)]:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - eye[axis]) / dirs[..., axis]  # rays have unit z in camera space: t is depth
        hit = eye + t[..., None] * dirs
        inside = ((hit[..., 0] >= x0 - 1e-6) & (hit[..., 0] <= x1 + 1e-6) & (hit[..., 1] >= y0 - 1e-6)
                  & (hit[..., 1] <= y1 + 1e-6) & (hit[..., 2] >= z0 - 1e-6) & (hit[..., 2] <= z0 + room.wall_height))
        best = np.where((t > 0) & inside & (t < best), t, best)
    return best


@pytest.mark.parametrize("W,H,K", [
    (96, 64, None),
    (77, 51, np.array([[50.0, 0.0, 30.3], [0.0, 45.0, 27.1], [0.0, 0.0, 1.0]])),  # off-centre, non-square
])
def test_rendered_depth_matches_analytic_planes(W, H, K):
    room = _empty_room()
    K = intrinsics_from_fov(W, H, 65.0) if K is None else K
    viewmats = [look_at([1.0, 0.8, 1.4], [3.5, 2.6, 0.2], up=(0.2, -0.1, 1.0)),
                look_at([3.2, 2.1, 1.5], [0.3, 0.4, 0.6])]
    frames = render_frames(room, viewmats, K, W, H, near=0.05, far=20.0)
    for frame, vm in zip(frames, viewmats):
        expected = _analytic_depth(room, K, vm, W, H)
        valid = frame.depth > 0
        assert valid.mean() > 0.9
        err = np.abs(frame.depth[valid] - expected[valid])
        # a half-pixel error in K would show up as centimetres here; exact K leaves float32 noise
        assert np.percentile(err, 99.5) < 1e-3, np.percentile(err, 99.5)
        assert (frame.instance_ids == -1).all()  # floor and walls are background


def test_object_lands_where_K_and_viewmat_say():
    part = Part("box", (0.2, 0.15, 0.25), np.array([2.0, 1.5, 0.251]), (1.0, 0.0, 0.0))
    obj = PlacedObject(0, "box", "red", 1.0, "medium", [part], [], 0, -1, "free")
    room = _empty_room([obj])
    W, H = 64, 48
    K = intrinsics_from_fov(W, H, 60.0)
    vm = look_at([0.7, 0.4, 1.3], [2.0, 1.5, 0.3])
    (frame,) = render_frames(room, [vm], K, W, H, near=0.05, far=20.0)
    corners = np.array([[x, y, z] for x in (1.8, 2.2) for y in (1.35, 1.65) for z in (0.001, 0.501)])
    uv, _ = project_points(corners, K, vm)
    mask = frame.instance_ids == 0
    rows, cols = np.nonzero(mask)
    # the rendered silhouette lies inside the projected corners' bounding box (to within a pixel)
    assert cols.min() >= np.floor(uv[:, 0].min()) - 1 and cols.max() <= np.ceil(uv[:, 0].max())
    assert rows.min() >= np.floor(uv[:, 1].min()) - 1 and rows.max() <= np.ceil(uv[:, 1].max())
    centre_uv, centre_z = project_points(np.array([[2.0, 1.5, 0.251]]), K, vm)
    c, r = np.floor(centre_uv[0]).astype(int)
    assert frame.instance_ids[r, c] == 0
    assert frame.depth[r, c] < centre_z[0]  # the front face is nearer than the box centre


def test_conversions_round_trip():
    K = np.array([[61.0, 0.0, 33.7], [0.0, 58.5, 20.2], [0.0, 0.0, 1.0]])
    P = projection_from_intrinsics(K, 64, 40, 0.05, 20.0)
    np.testing.assert_allclose(intrinsics_from_projection(P, 64, 40), K, atol=1e-12)
    np.testing.assert_allclose(intrinsics_from_projection(P.T.reshape(-1), 64, 40), K, atol=1e-12)
    vm = look_at([1.0, 2.0, 1.5], [0.0, 0.0, 0.5])
    np.testing.assert_allclose(viewmat_from_gl_view(gl_view_from_viewmat(vm).T.reshape(-1)), vm, atol=1e-12)
    # OpenGL camera looks down -z: a point in front of the OpenCV camera has negative GL z
    p = np.array([0.0, 0.0, 0.5, 1.0])
    assert (gl_view_from_viewmat(vm) @ p)[2] < 0 < (vm @ p)[2]
    near, far = 0.05, 20.0
    z = np.array([0.05, 1.0, 7.5, 20.0])
    buf = (1 / near - 1 / z) / (1 / near - 1 / far)  # OpenGL window depth of metric z
    np.testing.assert_allclose(depth_from_buffer(buf, near, far), z, rtol=1e-9)
    with pytest.raises(ValueError, match="skew"):
        projection_from_intrinsics(np.array([[50.0, 1.0, 30.0], [0, 50.0, 20.0], [0, 0, 1]]), 64, 40, 0.05, 20.0)


def test_pybullet_built_matrices_convert_to_our_camera():
    """Matrices made by pybullet's own helpers convert to a K / viewmat that explain its depth."""
    from liftgs.synth.render import build_world, pybullet_client

    room = _empty_room()
    W, H, near, far = 72, 56, 0.1, 15.0
    with pybullet_client() as (pb, cid):
        build_world(pb, cid, room)
        view = pb.computeViewMatrix([0.9, 0.7, 1.5], [3.0, 2.5, 0.4], [0.0, 0.0, 1.0], physicsClientId=cid)
        proj = pb.computeProjectionMatrixFOV(55.0, W / H, near, far, physicsClientId=cid)
        _, _, _, buf, _ = pb.getCameraImage(W, H, view, proj, renderer=pb.ER_TINY_RENDERER, physicsClientId=cid)
    K = intrinsics_from_projection(np.asarray(proj), W, H)
    viewmat = viewmat_from_gl_view(np.asarray(view))
    # pybullet's symmetric frustum, in our pixel-centre convention, is off-centre by half a pixel
    np.testing.assert_allclose(K[:2, 2], [W / 2 + 0.5, H / 2 - 0.5])
    np.testing.assert_allclose(np.linalg.inv(viewmat)[:3, 3], [0.9, 0.7, 1.5], atol=1e-5)
    depth = depth_from_buffer(np.asarray(buf).reshape(H, W), near, far)
    expected = _analytic_depth(room, K, viewmat, W, H)
    valid = depth < far * 0.99
    assert valid.mean() > 0.9
    assert np.percentile(np.abs(depth[valid] - expected[valid]), 99.5) < 1e-3
