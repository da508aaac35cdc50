"""Fast renderer vs the dense reference: values, gradients, gradcheck, weight reuse."""

from __future__ import annotations

import math

import pytest
import torch

from liftgs.render import composite, render, render_reference, render_weights
from liftgs.render.projection import project_gaussians
from liftgs.render.backends.numba.csr import csr_weights
from liftgs.render.backends.torch import block_weights

from helpers.render_scenes import ALL, GEOM, random_scene


def _fast(s, **kw):
    image, alpha, info = render(*(s[k] for k in GEOM), s["attributes"], s["viewmat"], s["K"],
                                s["width"], s["height"], s["background"], **kw)
    return image.reshape(-1, image.shape[-1]), alpha.reshape(-1), info


def _ref(s, pixels=None):
    return render_reference(*(s[k] for k in GEOM), s["attributes"], s["viewmat"], s["K"],
                            s["width"], s["height"], s["background"], pixels=pixels)


@pytest.mark.parametrize("seed,n,w,h", [(0, 60, 33, 21), (1, 300, 48, 40), (2, 500, 64, 64)])
def test_forward_matches_reference_float64(seed, n, w, h, backend):
    s = random_scene(n, w, h, seed)
    img, alpha, info = _fast(s, backend=backend)
    ref_img, ref_alpha = _ref(s)
    assert info.weights.layout is not None  # the fast path ran
    assert (img - ref_img).abs().max() <= 1e-5
    assert (alpha - ref_alpha).abs().max() <= 1e-5
    assert alpha.max() > 0.5  # the scene is not empty


def test_forward_matches_reference_float32(backend):
    s = random_scene(400, 50, 40, seed=3, dtype=torch.float32)
    img, alpha, _ = _fast(s, backend=backend)
    ref_img, ref_alpha = _ref(s)
    assert (img - ref_img).abs().max() <= 1e-4
    assert (alpha - ref_alpha).abs().max() <= 1e-4


def test_weights_match_dense_reference(backend):
    s = random_scene(200, 30, 26, seed=4)
    args = [s[k] for k in GEOM] + [s["viewmat"], s["K"], 30, 26]
    fast = render_weights(*args, backend=backend).to_dense()
    ref = render_weights(*args, backend="reference").to_dense()
    assert torch.equal(fast != 0, ref != 0)  # the same pairs are blended
    assert (fast - ref).abs().max() <= 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 2e-3)])
def test_gradients_match_reference(dtype, tol, backend):
    s = random_scene(120, 36, 28, seed=5, dtype=dtype)
    for k in ALL:
        s[k].requires_grad_(True)
    weight = torch.randn(36 * 28, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def loss(img, alpha):  # non-trivial upstream gradients for colour and alpha
        return (img * weight).sum() + (alpha * weight[:, 0]).sum() + (img**2).sum()

    fast = torch.autograd.grad(loss(*_fast(s, backend=backend)[:2]), [s[k] for k in ALL])
    ref = torch.autograd.grad(loss(*_ref(s)), [s[k] for k in ALL])
    for name, a, b in zip(ALL, fast, ref):
        scale = b.abs().max().clamp_min(1.0)
        assert (a - b).abs().max() <= tol * scale, name


def test_gradcheck_tiny_scene(backend):
    """Finite differences on a tiny float64 scene built away from the hard thresholds."""
    g = torch.Generator().manual_seed(7)
    n, W, H = 4, 9, 7
    means = torch.tensor([[0.05, 0.02, 2.0], [-0.1, 0.05, 2.5], [0.12, -0.08, 3.0],
                          [0.0, 0.1, 2.2]], dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.tensor([[0.3, 0.2, 0.25], [0.25, 0.35, 0.2], [0.4, 0.3, 0.3],
                           [0.2, 0.3, 0.25]], dtype=torch.float64)
    opac = torch.tensor([0.6, 0.5, 0.7, 0.4], dtype=torch.float64)
    attr = torch.rand(n, 3, generator=g, dtype=torch.float64)
    bg = torch.rand(3, generator=g, dtype=torch.float64)
    K = torch.tensor([[8.0, 0, 4.5], [0, 8.0, 3.5], [0, 0, 1]], dtype=torch.float64)
    vm = torch.eye(4, dtype=torch.float64)

    def f(means, quats, scales, opac, attr, bg):
        img, alpha, _ = render(means, quats, scales, opac, attr, vm, K, W, H, bg, backend=backend)
        return img, alpha

    # the scene must sit away from alpha = 1/255, 0.99 and T = 1e-4 for finite differences
    W_dense = render_weights(means, quats, scales, opac, vm, K, W, H, backend=backend).to_dense()
    assert W_dense.count_nonzero() > 40
    inputs = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales, opac, attr, bg))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_weights_reusable_across_attribute_stacks(backend):
    s = random_scene(150, 32, 24, seed=8, channels=3)
    args = [s[k] for k in GEOM] + [s["viewmat"], s["K"], 32, 24]
    W = render_weights(*args, backend=backend)
    feats = torch.rand(150, 7, dtype=torch.float64)
    rgb, a1 = composite(W, s["attributes"], s["background"])
    f1, a2 = composite(W, feats)
    both, _ = composite(W, torch.cat([s["attributes"], feats], 1))
    assert torch.allclose(torch.cat([rgb - W.transmittance[:, None] * s["background"], f1], 1),
                          both, atol=1e-12)
    assert torch.equal(a1, a2)
    ref_f, _ = render_reference(*[s[k] for k in GEOM], feats, s["viewmat"], s["K"], 32, 24)
    assert (f1 - ref_f).abs().max() <= 1e-10


def test_pixel_subset_matches_full_render(backend):
    s = random_scene(300, 40, 30, seed=9)
    full, full_alpha, _ = _fast(s, backend=backend)
    pixels = torch.randperm(1200, generator=torch.Generator().manual_seed(0))[:97]
    W = render_weights(*[s[k] for k in GEOM], s["viewmat"], s["K"], 40, 30, pixels=pixels,
                       backend=backend)
    vals, alpha = composite(W, s["attributes"], s["background"])
    assert (vals - full[pixels]).abs().max() <= 1e-12
    assert (alpha - full_alpha[pixels]).abs().max() <= 1e-12
    # gradients flow from the sampled pixels only
    s["means"].requires_grad_(True)
    W = render_weights(*[s[k] for k in GEOM], s["viewmat"], s["K"], 40, 30, pixels=pixels,
                       backend=backend)
    composite(W, s["attributes"])[0].sum().backward()
    assert torch.isfinite(s["means"].grad).all() and s["means"].grad.abs().sum() > 0


@pytest.mark.parametrize("tile", [1, 4, 16, 32])
def test_image_does_not_depend_on_tile_size(tile):
    s = random_scene(300, 45, 37, seed=10)
    proj = project_gaussians(*[s[k] for k in GEOM], s["viewmat"], s["K"], 45, 37)
    pixels = torch.arange(45 * 37)
    _, _, T8 = block_weights(proj, s["opacities"], pixels, 45, 37)
    _, _, Tt = block_weights(proj, s["opacities"], pixels, 45, 37, tile_size=tile)
    assert (T8 - Tt).abs().max() <= 1e-12
    _, _, Tn = csr_weights(proj, s["opacities"], pixels, 45, 37, tile_size=tile)
    assert (T8 - Tn).abs().max() <= 1e-12


def test_single_gaussian_by_hand(backend):
    """An isotropic Gaussian facing the camera: weight = o exp(-d^2 / (2 var)), var with 0.3 px."""
    f, z, s, o = 20.0, 2.0, 0.1, 0.8
    K = torch.tensor([[f, 0, 8.0], [0, f, 6.0], [0, 0, 1]], dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)  # projects to (8, 6)
    W = render_weights(means, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                       torch.full((1, 3), s, dtype=torch.float64),
                       torch.tensor([o], dtype=torch.float64), torch.eye(4, dtype=torch.float64),
                       K, 16, 12, backend=backend)
    var = (f * s / z) ** 2 + 0.3
    ys, xs = torch.meshgrid(torch.arange(12.0, dtype=torch.float64),
                            torch.arange(16.0, dtype=torch.float64), indexing="ij")
    d2 = (xs + 0.5 - 8.0) ** 2 + (ys + 0.5 - 6.0) ** 2
    expected = o * torch.exp(-d2 / (2 * var))
    expected = torch.where(expected >= 1 / 255, expected, 0.0).reshape(-1).double()
    assert torch.allclose(W.to_dense()[:, 0], expected, atol=1e-12)
    assert math.isclose(float(W.transmittance.min()), 1 - float(expected.max()), abs_tol=1e-12)
