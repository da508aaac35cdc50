"""Renderer edge cases: culling, borders, degenerate input, empty scenes, thresholds."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from liftgs.render import render, render_reference, render_weights
from liftgs.render.projection import ALPHA_MIN, opacity_extent, project_gaussians, quat_to_rotmat

D = torch.float64
K = torch.tensor([[30.0, 0, 16.0], [0, 30.0, 12.0], [0, 0, 1]], dtype=D)
VM = torch.eye(4, dtype=D)
W, H = 32, 24


def scene(means, scales=None, quats=None, opac=None, C=3, seed=0):
    n = means.shape[0]
    g = torch.Generator().manual_seed(seed)
    return dict(
        means=means.to(D),
        quats=torch.randn(n, 4, generator=g, dtype=D) if quats is None else quats.to(D),
        scales=torch.full((n, 3), 0.1, dtype=D) if scales is None else scales.to(D),
        opacities=torch.full((n,), 0.7, dtype=D) if opac is None else opac.to(D),
        attributes=torch.rand(n, C, generator=g, dtype=D),
    )


def both(s, bg=None, k=K, backend="auto"):
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "attributes")]
    img, alpha, info = render(*args, VM, k, W, H, bg, backend=backend)
    ref, ref_alpha = render_reference(*args, VM, k, W, H, bg)
    C = s["attributes"].shape[1]
    assert (img.reshape(-1, C) - ref).abs().max() <= 1e-10
    assert (alpha.reshape(-1) - ref_alpha).abs().max() <= 1e-10
    return img, alpha, info


def test_gaussians_behind_or_at_the_camera_are_culled_with_zero_gradient(backend):
    means = torch.tensor([[0.0, 0.0, -1.0], [0.1, 0.0, 0.005], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    s = scene(means)
    for k in ("means", "quats", "scales", "opacities", "attributes"):
        s[k].requires_grad_(True)
    img, alpha, info = both(s, backend=backend)
    assert info.projection.valid.tolist() == [False, False, False, True]
    (img.sum() + alpha.sum()).backward()
    for k in ("means", "scales", "opacities", "attributes"):
        assert torch.isfinite(s[k].grad).all()
        assert s[k].grad[:3].abs().max() == 0, k
    assert s["means"].grad[3].abs().sum() > 0


def test_gaussians_straddling_the_border_and_far_off_axis(backend):
    # centres just outside each edge, one far outside (culled), one far off-axis but large
    means = torch.tensor([[-0.58, 0.0, 1.0], [0.58, 0.1, 1.0], [0.0, -0.44, 1.0],
                          [0.1, 0.44, 1.0], [5.0, 0.0, 1.0], [-2.0, 0.3, 1.0]])
    scales = torch.tensor([[0.05] * 3] * 5 + [[1.5, 1.5, 0.2]])
    s = scene(means, scales=scales)
    img, alpha, info = both(s, bg=torch.tensor([0.2, 0.3, 0.4], dtype=D), backend=backend)
    valid = info.projection.valid.tolist()
    assert valid[:4] == [True] * 4 and valid[4] is False
    assert alpha[:, 0].max() > 0.1 and alpha[:, -1].max() > 0.1  # left / right borders lit
    assert alpha[0].max() > 0.1 and alpha[-1].max() > 0.1  # top / bottom borders lit


def test_degenerate_scales_render_a_low_pass_dot(backend):
    means = torch.tensor([[0.0, 0.0, 2.0], [0.2, 0.1, 2.5]])
    s = scene(means, scales=torch.zeros(2, 3), opac=torch.tensor([0.9, 0.9]))
    s["means"].requires_grad_(True)
    img, alpha, _ = both(s, backend=backend)
    assert 0 < alpha.max() <= 0.9  # 0.3 px^2 low-pass keeps a visible, finite dot
    (img.sum() + alpha.sum()).backward()
    assert torch.isfinite(s["means"].grad).all()


def test_zero_quaternion_is_the_identity_rotation(backend):
    assert torch.equal(quat_to_rotmat(torch.zeros(1, 4)), torch.eye(3)[None])
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.0, 3.0]])
    scales = torch.tensor([[0.2, 0.05, 0.1], [0.1, 0.3, 0.1]])
    q0 = torch.zeros(2, 4)
    q1 = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    a = both(scene(means, scales=scales, quats=q0), backend=backend)[0]
    b = both(scene(means, scales=scales, quats=q1), backend=backend)[0]
    assert torch.allclose(a, b, atol=1e-12)
    s = scene(means, scales=scales, quats=q0)
    s["quats"].requires_grad_(True)
    img, alpha, _ = render(*(s[k] for k in ("means", "quats", "scales", "opacities",
                                               "attributes")), VM, K, W, H, backend=backend)
    img.sum().backward()
    assert torch.isfinite(s["quats"].grad).all()


def test_no_gaussians(backend):
    s = scene(torch.zeros(0, 3))
    s["means"].requires_grad_(True)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=D)
    img, alpha, _ = render(*(s[k] for k in ("means", "quats", "scales", "opacities",
                                               "attributes")), VM, K, W, H, bg,
                            backend=backend)
    assert img.shape == (H, W, 3) and torch.equal(alpha, torch.zeros(H, W, dtype=D))
    assert torch.equal(img, bg.expand(H, W, 3))
    img.sum().backward()
    assert s["means"].grad.shape == (0, 3)


def test_fully_transparent_gaussians_leave_the_background(backend):
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.1, 2.2]])
    s = scene(means, opac=torch.tensor([0.5 * ALPHA_MIN, 0.0]))
    bg = torch.tensor([0.5, 0.6, 0.7], dtype=D)
    img, alpha, info = both(s, bg, backend=backend)
    assert alpha.abs().max() == 0 and torch.equal(img, bg.expand(H, W, 3))
    assert info.weights.values.numel() == 0


def test_opaque_stack_terminates_like_gsplat(backend):
    """Many opaque Gaussians: T reaches 1e-4 and the list ends; alpha clamps at 0.99."""
    n = 12
    means = torch.tensor([[0.0, 0.0, 2.0 + 0.01 * i] for i in range(n)])
    s = scene(means, scales=torch.full((n, 3), 0.3), opac=torch.full((n,), 1.0))
    k = K.clone()
    k[0, 2], k[1, 2] = W // 2 + 0.5, H // 2 + 0.5  # the stack projects onto a pixel centre
    img, alpha, info = both(s, k=k, backend=backend)
    Wd = info.weights.to_dense()
    centre = (H // 2) * W + W // 2
    row = Wd[centre]
    # alpha 0.99 each: T after k Gaussians is 0.01^k; the third would take T to 1e-6 <= 1e-4
    assert torch.allclose(row[:2], torch.tensor([0.99, 0.0099], dtype=D), atol=1e-6)
    assert row[2:].abs().max() == 0
    assert abs(float(alpha.reshape(-1)[centre]) - (1 - 1e-4)) < 1e-6


def test_equal_depths_keep_index_order(backend):
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    s = scene(means, quats=torch.tensor([[1.0, 0, 0, 0]] * 2), opac=torch.tensor([0.6, 0.3]))
    img, alpha, info = both(s, backend=backend)
    centre = (H // 2) * W + W // 2
    w = info.weights.to_dense()[centre]
    a0, a1 = w[0], w[1] / (1 - w[0])  # first by index is in front
    assert abs(float(a1) / float(a0) - 0.5) < 1e-9


def test_extent_is_exact_for_the_alpha_cutoff():
    o = torch.tensor([0.01, 0.3, 0.99])
    r = opacity_extent(o)
    assert torch.allclose(o * torch.exp(-0.5 * r**2), torch.full((3,), ALPHA_MIN), rtol=1e-5)
    assert float(opacity_extent(torch.tensor([1.0]))) <= 3.33


def test_projection_follows_pinhole_and_clamps_the_jacobian():
    means = torch.tensor([[0.3, -0.2, 2.0], [50.0, 0.0, 1.0]], dtype=D)
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=D),
                             torch.full((2, 3), 0.1, dtype=D), torch.full((2,), 0.5, dtype=D),
                             VM, K, W, H)
    assert torch.allclose(proj.means2d[0], torch.tensor([30 * 0.15 + 16, -30 * 0.1 + 12], dtype=D))
    assert proj.valid.tolist() == [True, False]
    assert torch.isfinite(proj.conics).all()


def test_full_gradcheck_on_a_two_gaussian_scene(backend):
    means = torch.tensor([[0.02, 0.01, 1.0], [-0.03, 0.02, 1.3]], dtype=D)
    quats = torch.tensor([[0.9, 0.1, -0.2, 0.3], [0.5, 0.5, 0.1, -0.2]], dtype=D)
    scales = torch.tensor([[0.12, 0.08, 0.1], [0.1, 0.14, 0.09]], dtype=D)
    opac = torch.tensor([0.55, 0.65], dtype=D)
    attr = torch.tensor([[0.2, 0.9], [0.7, 0.1]], dtype=D)
    bg = torch.tensor([0.3, 0.5], dtype=D)
    k = torch.tensor([[4.0, 0, 2.5], [0, 4.0, 2.0], [0, 0, 1]], dtype=D)

    def f(*x):
        img, alpha, _ = render(*x[:5], VM, k, 5, 4, x[5], backend=backend)
        return img, alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales, opac, attr, bg))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors():
    s = scene(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="quats"):
        render(s["means"], s["quats"][:, :3], s["scales"], s["opacities"], s["attributes"],
               VM, K, W, H)
    with pytest.raises(ValueError, match="pixels"):
        render_weights(s["means"], s["quats"], s["scales"], s["opacities"], VM, K, W, H,
                       pixels=torch.tensor([W * H]))


def test_cpu_path_never_imports_gsplat():
    code = ("import sys, torch; from liftgs.render import render; "
            "render(torch.zeros(1, 3) + torch.tensor([0, 0, 2.0]), torch.ones(1, 4), "
            "torch.full((1, 3), 0.1), torch.full((1,), 0.5), torch.ones(1, 3), torch.eye(4), "
            "torch.tensor([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]]), 10, 10); "
            "assert 'gsplat' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat backend needs CUDA")
def test_gsplat_backend_matches_cpu():  # pragma: no cover - no GPU in CI
    pytest.importorskip("gsplat")
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.05, 2.5]])
    s = {k: v.float() for k, v in scene(means).items()}
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "attributes")]
    cpu, _, _ = render(*args, VM.float(), K.float(), W, H, backend="torch")
    gpu, _, _ = render(*[a.cuda() for a in args], VM.float().cuda(), K.float().cuda(), W, H,
                       backend="gsplat")
    assert (gpu.cpu() - cpu).abs().max() < 1e-2  # gsplat clamps alpha at 0.999, not 0.99
