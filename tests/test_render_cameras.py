"""The renderer under rotated, translated, off-centre cameras against a projection written here.

The library's dense reference shares its projection with the fast backends, so a mistake in
that shared code (a transposed world->camera rotation, a principal point read from the wrong
entry of ``K``) would pass every backend-vs-reference comparison. Identity cameras with a
centred principal point hide such mistakes altogether. The reference below is written from the
textbook formulas with gsplat's conventions (world->camera ``viewmat``, OpenCV axes, pixel
centres at +0.5, wxyz quaternions, EWA covariance J W Sigma W^T J^T plus a 0.3 px^2 low-pass,
alpha = min(0.99, o exp(-sigma)), alpha < 1/255 skipped, a pixel's list ends before the
Gaussian that would take its transmittance to <= 1e-4) and imports nothing from
``liftgs.render``.
"""

from __future__ import annotations

import math

import pytest
import torch

from liftgs.render import render

# gsplat's constants, restated (see liftgs/render/projection.py)
NEAR, EPS2D, ALPHA_MIN, ALPHA_MAX, T_MIN, FOV_WIDEN = 0.01, 0.3, 1.0 / 255.0, 0.99, 1e-4, 0.3
GEOM = ("means", "quats", "scales", "opacities")
BACKENDS = ("numba", "torch", "reference")


def rotation_from_quat(q: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] from wxyz [N, 4]: the standard unit-quaternion rotation matrix."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def reference_render(means, quats, scales, opacities, colors, viewmat, K, width, height, background):
    """Image [H, W, C] and alpha [H, W]: every pixel against every Gaussian, front to back."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    cam = torch.einsum("ij,nj->ni", R, means) + t  # world -> camera
    x, y, z = cam.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = fx * x / z + cx, fy * y / z + cy
    # the Jacobian is taken at x/z, y/z clamped to the field of view widened by 30 %
    lim_x = (-(cx / fx + FOV_WIDEN * 0.5 * width / fx), (width - cx) / fx + FOV_WIDEN * 0.5 * width / fx)
    lim_y = (-(cy / fy + FOV_WIDEN * 0.5 * height / fy), (height - cy) / fy + FOV_WIDEN * 0.5 * height / fy)
    xc = z * torch.clamp(x / z, float(lim_x[0]), float(lim_x[1]))
    yc = z * torch.clamp(y / z, float(lim_y[0]), float(lim_y[1]))
    zero = torch.zeros_like(z)
    J = torch.stack([torch.stack([fx / z, zero, -fx * xc / z**2], -1),
                     torch.stack([zero, fy / z, -fy * yc / z**2], -1)], -2)  # [N, 2, 3]
    Rq = rotation_from_quat(quats)
    Sigma = Rq @ torch.diag_embed(scales**2) @ Rq.transpose(-1, -2)  # world covariance
    JW = J @ R
    cov2d = JW @ Sigma @ JW.transpose(-1, -2) + EPS2D * torch.eye(2, dtype=means.dtype)
    conic = torch.linalg.inv(cov2d)  # [N, 2, 2]
    ok = (z > NEAR) & (torch.linalg.det(cov2d) > 0) & (opacities >= ALPHA_MIN)

    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype),
                            torch.arange(width, dtype=means.dtype), indexing="ij")
    centres = torch.stack([xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5], -1)  # [P, 2]
    d = centres[:, None, :] - torch.stack([u, v], -1)[None]  # [P, N, 2]
    sigma = 0.5 * torch.einsum("pni,nij,pnj->pn", d, conic, d)
    alpha = torch.clamp(opacities[None] * torch.exp(-sigma), max=ALPHA_MAX)
    keep = ok[None] & (sigma >= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))

    order = torch.sort(z.detach(), stable=True).indices  # front to back
    a = alpha[:, order]
    after = torch.cumprod(1 - a, dim=1)  # transmittance after each Gaussian
    before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], 1)
    blended = keep[:, order] & (after.detach() > T_MIN)
    w = torch.where(blended, a * before, torch.zeros_like(a))
    T = torch.where(blended, 1 - a, torch.ones_like(a)).prod(1)
    image = w @ colors[order] + T[:, None] * background
    return image.reshape(height, width, -1), (1 - T).reshape(height, width)


def random_rotation(g: torch.Generator, dtype) -> torch.Tensor:
    q = torch.randn(1, 4, generator=g, dtype=dtype)
    return rotation_from_quat(q)[0]


def camera_scene(seed: int, n: int, width: int, height: int, dtype=torch.float64) -> dict:
    """Gaussians in front of a randomly rotated and translated camera with fx != fy and an
    off-centre principal point; many lie off-image, none behind."""
    g = torch.Generator().manual_seed(seed)
    fx, fy = 0.9 * width, 1.1 * width
    cx, cy = 0.37 * width, 0.61 * height
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=dtype)
    z = 1.5 + 3.0 * torch.rand(n, generator=g, dtype=dtype)
    size = torch.tensor([width, height], dtype=dtype)
    uv = (1.7 * torch.rand(n, 2, generator=g, dtype=dtype) - 0.35) * size  # some beyond the
    # widened field of view, where the EWA Jacobian is clamped
    cam = torch.stack([(uv[:, 0] - cx) / fx * z, (uv[:, 1] - cy) / fy * z, z], -1)
    R = random_rotation(g, dtype)
    t = torch.randn(3, generator=g, dtype=dtype) * 2.0
    viewmat = torch.eye(4, dtype=dtype)
    viewmat[:3, :3], viewmat[:3, 3] = R, t
    means = (cam - t) @ R  # camera -> world: R^T (p - t)
    return {
        "means": means,
        "quats": torch.randn(n, 4, generator=g, dtype=dtype),
        "scales": 0.02 + 0.12 * torch.rand(n, 3, generator=g, dtype=dtype),
        "opacities": 0.05 + 0.9 * torch.rand(n, generator=g, dtype=dtype),
        "colors": torch.rand(n, 3, generator=g, dtype=dtype),
        "viewmat": viewmat, "K": K, "width": width, "height": height,
        "background": torch.rand(3, generator=g, dtype=dtype),
    }


def _render(s, backend):
    return render(*(s[k] for k in GEOM), s["colors"], s["viewmat"], s["K"], s["width"],
                  s["height"], s["background"], backend=backend)[:2]


def _reference(s):
    return reference_render(*(s[k] for k in GEOM), s["colors"], s["viewmat"], s["K"], s["width"],
                            s["height"], s["background"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,n,w,h", [(0, 80, 37, 23), (1, 200, 29, 44)])
def test_rotated_camera_matches_independent_reference(seed, n, w, h, backend):
    s = camera_scene(seed, n, w, h)
    img, alpha = _render(s, backend)
    ref_img, ref_alpha = _reference(s)
    assert img.shape == (h, w, 3) and alpha.shape == (h, w)
    assert ref_alpha.max() > 0.5 and (ref_alpha < 0.05).any()  # content and empty space
    assert (img - ref_img).abs().max() <= 1e-9
    assert (alpha - ref_alpha).abs().max() <= 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotated_camera_gradients_match_independent_reference(backend):
    s = camera_scene(2, 90, 27, 19)
    for k in GEOM:
        s[k].requires_grad_(True)
    weight = torch.randn(19, 27, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss(img, alpha):  # non-trivial upstream gradients for colour and alpha
        return (img * weight).sum() + (alpha * weight[..., 0]).sum() + (img**2).sum()

    got = torch.autograd.grad(loss(*_render(s, backend)), [s[k] for k in GEOM])
    want = torch.autograd.grad(loss(*_reference(s)), [s[k] for k in GEOM])
    for name, a, b in zip(GEOM, got, want):
        assert b.abs().max() > 1e-3, name  # the gradient is not trivially zero
        assert (a - b).abs().max() <= 1e-8 * b.abs().max().clamp_min(1.0), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_point_lands_on_the_pinhole_pixel(backend):
    """A small Gaussian placed so the pinhole formula puts it in pixel (px, py) peaks there."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(3)
    W, H = 40, 24
    K = torch.tensor([[30.0, 0, 13.3], [0, 34.0, 15.8], [0, 0, 1]], dtype=dtype)
    viewmat = torch.eye(4, dtype=dtype)
    viewmat[:3, :3] = random_rotation(g, dtype)
    viewmat[:3, 3] = torch.tensor([0.4, -1.2, 2.5], dtype=dtype)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    for px, py, depth in [(3, 20, 2.0), (31, 5, 3.5), (13, 15, 1.2), (38, 1, 4.0)]:
        # a camera point whose projection is pixel (px, py)'s centre, taken to the world
        cam = torch.tensor([(px + 0.5 - 13.3) / 30.0 * depth, (py + 0.5 - 15.8) / 34.0 * depth,
                            depth], dtype=dtype)
        world = R.T @ (cam - t)
        # the pinhole formula applied to the world point gives the pixel back
        p = R @ world + t
        assert math.floor(float(K[0, 0] * p[0] / p[2] + K[0, 2])) == px
        assert math.floor(float(K[1, 1] * p[1] / p[2] + K[1, 2])) == py
        _, alpha = render(world[None], torch.tensor([[1.0, 0, 0, 0]], dtype=dtype),
                          torch.full((1, 3), 0.01, dtype=dtype), torch.tensor([0.9], dtype=dtype),
                          torch.ones(1, 1, dtype=dtype), viewmat, K, W, H, backend=backend)[:2]
        iy, ix = divmod(int(alpha.argmax()), W)
        assert (ix, iy) == (px, py)
        assert float(alpha[py, px]) == pytest.approx(0.9, abs=1e-9)  # dead centre: o exp(0)
