"""Reconstruction pieces on hand-built cases: density control, Adam bookkeeping, SSIM / PSNR,
SH colours, initialisation, the frame checks and the config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftgs.recon.config import SCHEDULES, ReconConfig, schedule_config
from liftgs.recon.densify import (PARAM_NAMES, Adam, DensifyStats, add_gaussians, densify_and_prune,
                                  keep_gaussians, reset_opacity)
from liftgs.recon.metrics import psnr, ssim, ssim_map


# ------------------------------------------------------------------------------ helpers


def hand_built(log_scales, opacities, degree=1) -> dict[str, torch.Tensor]:
    n = len(opacities)
    K = (degree + 1) ** 2
    o = torch.tensor(opacities, dtype=torch.float32)
    params = {
        "means": torch.arange(n * 3, dtype=torch.float32).reshape(n, 3),
        "sh_dc": torch.arange(n, dtype=torch.float32).reshape(n, 1, 1).repeat(1, 1, 3),
        "sh_rest": torch.arange(n, dtype=torch.float32).reshape(n, 1, 1).repeat(1, K - 1, 3) + 100,
        "log_scales": torch.tensor(log_scales, dtype=torch.float32).reshape(n, 1).repeat(1, 3),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        "opacity_logits": torch.log(o / (1 - o)),
    }
    return {k: v.requires_grad_(True) for k, v in params.items()}


def adam_with_row_ids(params) -> Adam:
    """An Adam whose moments hold each row's original index (to follow rows around)."""
    adam = Adam()
    for k, p in params.items():
        ids = torch.arange(p.shape[0], dtype=torch.float32).reshape(-1, *[1] * (p.ndim - 1))
        adam.m[k] = (ids + 1).expand_as(p).clone()
        adam.v[k] = (ids + 1).expand_as(p).clone() * 10
        adam.steps[k] = 7
    return adam


def densify(params, adam, stats, **kw):
    args = dict(grad_threshold=1e-3, percent_dense=0.01, extent=1.0, min_opacity=0.005, max_world_size=0.5,
                max_screen_size=None, max_gaussians=1000, generator=torch.Generator().manual_seed(0))
    args.update(kw)
    return densify_and_prune(params, adam, stats, **args)


# ------------------------------------------------------------------------ density control


def test_clone_split_prune_and_adam_rows():
    small, large = math.log(0.005), math.log(0.1)  # clone at <= 0.01 * extent
    # 0 small+high grad -> clone; 1 small+low; 2 large+high -> split; 3 large+low, transparent -> pruned
    params = hand_built([small, small, large, large], [0.5, 0.5, 0.5, 0.001])
    before = {k: v.detach().clone() for k, v in params.items()}
    adam = adam_with_row_ids(params)
    stats = DensifyStats(grad=torch.tensor([0.02, 0.0005, 0.06, 0.0]), count=torch.tensor([10.0, 10, 20, 0]),
                         max_radius=torch.zeros(4))
    res = densify(params, adam, stats)
    assert (res.cloned, res.split, res.pruned, res.capped) == (1, 1, 1, False)
    # rows now: original 0, original 1, the clone of 0, the two halves of 2 (3 pruned, 2 removed)
    N = params["means"].shape[0]
    assert N == 5
    for k in PARAM_NAMES:
        assert params[k].is_leaf and params[k].requires_grad
        assert params[k].shape[0] == N
        assert adam.m[k].shape == params[k].shape and adam.v[k].shape == params[k].shape
        assert adam.steps[k] == 7  # step counts stay per parameter
        torch.testing.assert_close(params[k][0], before[k][0], rtol=0, atol=0)
        torch.testing.assert_close(params[k][1], before[k][1], rtol=0, atol=0)
        torch.testing.assert_close(params[k][2], before[k][0], rtol=0, atol=0)  # the clone
        # moments: kept rows keep theirs, new rows start at zero
        assert float(adam.m[k][0].flatten()[0]) == 1 and float(adam.m[k][1].flatten()[0]) == 2
        assert float(adam.v[k][1].flatten()[0]) == 20
        assert float(adam.m[k][2:].abs().sum()) == 0 and float(adam.v[k][2:].abs().sum()) == 0
    # the split halves: scales / 1.6, everything else copied, means sampled around the parent
    for row in (3, 4):
        torch.testing.assert_close(params["log_scales"][row], before["log_scales"][2] - math.log(1.6))
        for k in ("sh_dc", "sh_rest", "quats", "opacity_logits"):
            torch.testing.assert_close(params[k][row], before[k][2], rtol=0, atol=0)
        offset = (params["means"][row] - before["means"][2]).detach()
        assert 0 < float(offset.norm()) < 5 * 0.1 * math.sqrt(3)
    assert not torch.equal(params["means"][3], params["means"][4])
    assert stats.grad.shape == (5,) and float(stats.grad.abs().sum() + stats.count.sum()) == 0  # reset


def test_split_samples_follow_the_gaussian():
    """Split offsets are draws from N(0, R S² Rᵀ): anisotropic along the rotated long axis."""
    n = 4000
    params = hand_built([math.log(0.1)] * n, [0.5] * n)
    with torch.no_grad():
        params["log_scales"][:, 0] = math.log(0.4)  # long along local x
        # rotation by 90 degrees about z: local x -> world y
        params["quats"][:] = torch.tensor([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])
    parents = params["means"].detach().clone()
    stats = DensifyStats(grad=torch.ones(n), count=torch.ones(n), max_radius=torch.zeros(n))
    densify(params, Adam(), stats, max_world_size=10.0, max_gaussians=10 * n)
    children = params["means"].detach()
    assert children.shape[0] == 2 * n
    offsets = torch.cat([children[:n] - parents, children[n:] - parents])
    std = offsets.std(dim=0)
    torch.testing.assert_close(std, torch.tensor([0.1, 0.4, 0.1]), rtol=0.05, atol=0)


def test_prune_world_and_screen_size_and_cap():
    params = hand_built([math.log(0.05), math.log(0.3), math.log(0.05), math.log(0.05)], [0.5] * 4)
    stats = DensifyStats(grad=torch.zeros(4), count=torch.ones(4), max_radius=torch.tensor([0.0, 0.0, 0.2, 0.1]))
    res = densify(params, Adam(), stats, max_world_size=0.2)  # no screen test before the first reset
    assert res.pruned == 1 and params["means"].shape[0] == 3  # the 0.3 m one
    stats = DensifyStats(grad=torch.zeros(3), count=torch.ones(3), max_radius=torch.tensor([0.0, 0.2, 0.1]))
    res = densify(params, Adam(), stats, max_world_size=0.2, max_screen_size=0.15)
    assert res.pruned == 1 and params["means"].shape[0] == 2
    # the cap: room for one more Gaussian -> only the highest gradient grows
    params = hand_built([math.log(0.005)] * 3, [0.5] * 3)
    stats = DensifyStats(grad=torch.tensor([0.01, 0.03, 0.02]), count=torch.ones(3), max_radius=torch.zeros(3))
    res = densify(params, Adam(), stats, max_gaussians=4)
    assert (res.cloned, res.split, res.capped) == (1, 0, True)
    torch.testing.assert_close(params["means"][3], params["means"][1])


def test_nothing_to_do_keeps_everything():
    params = hand_built([math.log(0.05)] * 3, [0.5] * 3)
    before = {k: v.detach().clone() for k, v in params.items()}
    stats = DensifyStats.zeros(3)
    res = densify(params, Adam(), stats)
    assert (res.cloned, res.split, res.pruned) == (0, 0, 0)
    for k in PARAM_NAMES:
        assert torch.equal(params[k], before[k])


def test_add_keep_reset_opacity():
    params = hand_built([math.log(0.05)] * 3, [0.5, 0.005, 0.9])
    adam = adam_with_row_ids(params)
    stats = DensifyStats(torch.ones(3), torch.ones(3), torch.ones(3))
    add_gaussians(params, adam, stats, {k: v.detach()[:1] for k, v in params.items()})
    assert params["means"].shape[0] == 4 and float(adam.m["means"][3].abs().sum()) == 0
    assert stats.grad.tolist() == [1, 1, 1, 0]
    keep_gaussians(params, adam, stats, torch.tensor([True, False, True, True]))
    assert adam.m["quats"][:, 0].tolist() == [1, 3, 0] and stats.count.tolist() == [1, 1, 0]
    reset_opacity(params, adam, 0.01)
    o = torch.sigmoid(params["opacity_logits"]).detach()
    torch.testing.assert_close(o, torch.tensor([0.01, 0.01, 0.01]))
    assert float(adam.m["opacity_logits"].abs().sum()) == 0 and float(adam.m["means"].abs().sum()) > 0
    params = hand_built([math.log(0.05)] * 2, [0.004, 0.5])
    reset_opacity(params, Adam(), 0.01)  # lower opacities stay
    torch.testing.assert_close(torch.sigmoid(params["opacity_logits"]).detach(), torch.tensor([0.004, 0.01]))


def test_stats_update_scales_gradients_to_ndc():
    stats = DensifyStats.zeros(3)
    grad = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    visible = torch.tensor([True, True, False])
    extents = torch.tensor([[3.0, 4.0], [10.0, 2.0], [50.0, 50.0]])
    stats.update(grad, visible, extents, width=64, height=32)
    torch.testing.assert_close(stats.grad, torch.tensor([32.0, 32.0, 0.0]))  # x * W/2, y * H/2
    assert stats.count.tolist() == [1, 1, 0]
    torch.testing.assert_close(stats.max_radius, torch.tensor([4 / 64, 10 / 64, 0.0]))
    stats.update(grad, torch.tensor([True, False, False]), extents * 0.5, width=64, height=32)
    assert stats.count.tolist() == [2, 1, 0]
    torch.testing.assert_close(stats.max_radius, torch.tensor([4 / 64, 10 / 64, 0.0]))  # a maximum


def test_adam_matches_torch():
    torch.manual_seed(0)
    a = torch.randn(20, 3, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ours, ref = Adam(eps=1e-15), torch.optim.Adam([b], lr=0.01, eps=1e-15, foreach=False)
    target = torch.randn(20, 3)
    for _ in range(25):
        ((a - target) ** 2).sum().backward()
        ours.step({"a": a}, {"a": 0.01})
        a.grad = None
        ref.zero_grad()
        ((b - target) ** 2).sum().backward()
        ref.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert ours.steps["a"] == 25


# ---------------------------------------------------------------------------- metrics


def slow_ssim(a: np.ndarray, b: np.ndarray, padding: str) -> float:
    """SSIM by its definition, pixel by pixel: Gaussian-weighted local statistics over an
    11 x 11 window (sigma 1.5); 'same' treats pixels outside the image as zeros."""
    H, W, C = a.shape
    x = np.arange(11) - 5
    g = np.exp(-x**2 / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    pa = np.pad(a, ((5, 5), (5, 5), (0, 0)))
    pb = np.pad(b, ((5, 5), (5, 5), (0, 0)))
    rows = range(H) if padding == "same" else range(5, H - 5)
    cols = range(W) if padding == "same" else range(5, W - 5)
    vals = []
    for c in range(C):
        for i in rows:
            for j in cols:
                A, B = pa[i:i + 11, j:j + 11, c], pb[i:i + 11, j:j + 11, c]
                ma, mb = (w * A).sum(), (w * B).sum()
                va = (w * A * A).sum() - ma * ma
                vb = (w * B * B).sum() - mb * mb
                cov = (w * A * B).sum() - ma * mb
                c1, c2 = 0.01**2, 0.03**2
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_ssim_against_definition(padding):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (18, 23, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = float(ssim(torch.from_numpy(a), torch.from_numpy(b), padding=padding))
    assert ours == pytest.approx(slow_ssim(a, b, padding), abs=1e-10)
    assert float(ssim(torch.from_numpy(a), torch.from_numpy(a), padding=padding)) == pytest.approx(1.0)


def test_ssim_against_libraries():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (40, 33, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1).astype(np.float32)
    ours = float(ssim(torch.from_numpy(a), torch.from_numpy(b), padding="valid"))
    from pytorch_msssim import ssim as ms_ssim

    ref = float(ms_ssim(torch.from_numpy(a).permute(2, 0, 1)[None], torch.from_numpy(b).permute(2, 0, 1)[None],
                        data_range=1.0, win_size=11))
    assert ours == pytest.approx(ref, abs=1e-5)
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return
    sk = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)
    assert ours == pytest.approx(sk, abs=1e-4)


def test_ssim_is_differentiable_and_psnr():
    a = torch.rand(16, 16, 3, requires_grad=True)
    b = torch.rand(16, 16, 3)
    (1 - ssim(a, b)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert ssim_map(a.detach(), b).shape == (1, 3, 16, 16)
    x = torch.zeros(4, 4, 3)
    assert psnr(x, x + 0.1) == pytest.approx(20.0)
    assert psnr(x, x) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        ssim(a, b[:8])


# ------------------------------------------------------------------- pieces of the fit


def test_sh_colors_degree_one_and_init():
    from liftgs.recon.optimise import SH_C1, init_gaussians, sh_colors

    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]], np.float32)
    cols = np.array([[0.2, 0.4, 0.6]] * 5, np.float32)
    p = init_gaussians(pts, cols, sh_degree=1, init_opacity=0.1)
    assert p["sh_rest"].shape == (5, 3, 3) and float(p["sh_rest"].abs().sum()) == 0
    torch.testing.assert_close(torch.sigmoid(p["opacity_logits"]), torch.full((5,), 0.1))
    assert p["quats"].tolist()[0] == [1, 0, 0, 0]
    # scale of point 0: root mean square distance to its 3 nearest neighbours (all at 1)
    torch.testing.assert_close(p["log_scales"][0], torch.zeros(3), atol=1e-6, rtol=0)
    campos = torch.tensor([0.0, 0.0, -1.0])
    rgb = sh_colors(p["sh_dc"], p["sh_rest"], p["means"], campos, 0)
    torch.testing.assert_close(rgb, torch.from_numpy(cols), atol=1e-6, rtol=0)
    # a degree-1 coefficient on the z basis (index 1) adds SH_C1 * dir_z
    rest = p["sh_rest"].clone()
    rest[:, 1, 0] = 0.5
    rgb1 = sh_colors(p["sh_dc"], rest, p["means"], campos, 1)
    d = torch.nn.functional.normalize(p["means"] - campos, dim=-1)
    torch.testing.assert_close(rgb1[:, 0], torch.from_numpy(cols[:, 0]) + SH_C1 * 0.5 * d[:, 2])
    torch.testing.assert_close(sh_colors(p["sh_dc"], rest, p["means"], campos, 0), rgb)  # degree 0 ignores it


def test_checks_find_missing_depth_exposure_and_bad_pose():
    from liftgs.recon.checks import check_frames, relative_gains
    from liftgs.testing.scans import degrade_scan, fabricate_scan

    scene = degrade_scan(fabricate_scan(size=40, num_frames=10), no_depth=[1], zero_depth=[2],
                         exposure={4: 1.4}, bad_pose={6: 10.0})
    checks = check_frames(scene.points, scene.colors, scene.frames)
    assert [c.depth_problem for c in checks[:3]] == [None, "no depth file", "depth is all zeros"]
    agreement = {c.index: c.agreement for c in checks if c.agreement is not None}
    assert set(agreement) == set(range(10)) - {1, 2}
    others = [a for i, a in agreement.items() if i != 6]
    assert agreement[6] < np.median(others) - 0.2
    gains = relative_gains(checks)
    assert gains[4] == pytest.approx(1.4, abs=0.03)
    assert all(abs(g - 1) < 0.03 for i, g in gains.items() if i != 4)


def test_config_and_schedules():
    assert set(SCHEDULES) == {"standard", "fast"}
    assert SCHEDULES["fast"].steps < SCHEDULES["standard"].steps
    cfg = schedule_config("fast", sh_degree=0)
    assert cfg.schedule == "fast" and cfg.sh_degree == 0
    for bad, match in [({"sh_degree": 4}, "sh_degree"), ({"holdout_every": 1}, "holdout_every"),
                       ({"steps": 0}, "steps"), ({"lambda_dssim": 2.0}, "lambda_dssim"),
                       ({"exposure": "sometimes"}, "exposure")]:
        with pytest.raises(ValueError, match=match):
            ReconConfig(**bad)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_config("slow")
    with pytest.raises(ValueError, match="unknown reconstruction settings"):
        schedule_config("fast", speed=3)


def test_render_weights_low_pass_option():
    """``render_weights(eps2d=...)``: the default is 3DGS's 0.3 px²; a smaller low-pass gives
    tighter screen footprints (recon fits with 0.1)."""
    from liftgs.render import render_weights

    g = torch.Generator().manual_seed(0)
    n = 30
    means = torch.rand(n, 3, generator=g) * torch.tensor([1.0, 1.0, 0.5]) + torch.tensor([-0.5, -0.5, 2.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.01 + 0.002
    opac = torch.rand(n, generator=g) * 0.5 + 0.4
    K = torch.tensor([[20.0, 0, 12], [0, 20.0, 12], [0, 0, 1]])
    args = (means, quats, scales, opac, torch.eye(4), K, 24, 24)
    default, explicit, sharp = render_weights(*args), render_weights(*args, eps2d=0.3), render_weights(*args, eps2d=0.05)
    assert torch.equal(default.values, explicit.values)
    valid = default.projection.valid & sharp.projection.valid
    assert (sharp.projection.extents[valid] < default.projection.extents[valid]).all()


def test_half_resolution_view():
    from liftgs.recon.optimise import View

    rgb = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3) * 3
    depth = np.zeros((6, 4), np.float32)
    depth[0, 0], depth[0, 1], depth[1, 0] = 1.0, 3.0, np.nan  # one valid-mean cell, NaN = invalid
    K = torch.tensor([[4.0, 0, 2], [0, 4.0, 3], [0, 0, 1]])
    view = View(0, "f", rgb, depth, torch.eye(4), K, torch.zeros(3), width=4, height=6)
    half = view.half()
    assert (half.width, half.height) == (2, 3) and half.K[0, 0] == 2 and half.K[1, 2] == 1.5
    img = half.image()
    torch.testing.assert_close(img[0, 0], torch.from_numpy(rgb[:2, :2].reshape(4, 3).astype(np.float32) / 255).mean(0))
    d = half.depth()
    assert float(d[0, 0]) == 2.0 and float(d[1, 1]) == 0.0
    assert view.image().shape == (6, 4, 3) and float(view.depth()[1, 0]) == 0.0
