"""The compiled (numba) backend: determinism, weight reuse in one backward, subsets, overflow.

Value and gradient agreement with the dense reference on random scenes and edge cases runs
in test_render.py / test_render_edge.py, parametrised over every fast backend.
"""

from __future__ import annotations

import pytest
import torch

import liftgs.render.backends.numba.csr as nb
from liftgs.render import composite, render, render_reference, render_weights
from liftgs.render.binning import tile_lists
from liftgs.render.backends.numba.csr import CsrLayout, tile_lists_numba
from liftgs.render.projection import _cov2d_terms, covariance_3d, project_gaussians

from helpers.render_scenes import ALL, GEOM, random_scene


def _grads(s, threads: int, pixels=None):
    """Values, alpha and the gradients of all six inputs, with ``threads`` torch and numba threads."""
    from liftgs.runtime import configure_runtime

    old = torch.get_num_threads()
    configure_runtime(threads=threads)
    try:
        inputs = {k: s[k].detach().clone().requires_grad_(True) for k in ALL}
        W = render_weights(*(inputs[k] for k in GEOM), s["viewmat"], s["K"], s["width"],
                           s["height"], pixels=pixels, backend="numba")
        vals, alpha = composite(W, inputs["attributes"], inputs["background"])
        loss = (vals.square() * torch.arange(vals.shape[1], dtype=vals.dtype)).sum() + alpha.sum()
        grads = torch.autograd.grad(loss, [inputs[k] for k in ALL])
    finally:
        configure_runtime(threads=old)
    return [vals.detach(), alpha.detach(), *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitwise_deterministic_across_runs_and_thread_counts(dtype):
    s = random_scene(800, 64, 48, seed=11, dtype=dtype, channels=19)
    a, b, c = _grads(s, 2), _grads(s, 2), _grads(s, 1)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_several_composites_on_one_weights_in_one_backward():
    s = random_scene(250, 40, 30, seed=12, channels=3)
    feats = torch.rand(250, 9, dtype=torch.float64)
    masks = torch.rand(250, 5, dtype=torch.float64)

    def losses(fast: bool):
        inp = {k: s[k].detach().clone().requires_grad_(True) for k in ALL}
        f, m = feats.clone().requires_grad_(True), masks.clone().requires_grad_(True)
        geom = [inp[k] for k in GEOM] + [s["viewmat"], s["K"], 40, 30]
        if fast:
            W = render_weights(*geom, backend="numba")
            assert isinstance(W.layout, CsrLayout)
            rgb, alpha = composite(W, inp["attributes"], inp["background"])
            fv, _ = composite(W, f)
            mv, _ = composite(W, m)
        else:
            rgb, alpha = render_reference(*geom[:4], inp["attributes"], *geom[4:],
                                          inp["background"])
            fv, _ = render_reference(*geom[:4], f, *geom[4:])
            mv, _ = render_reference(*geom[:4], m, *geom[4:])
        loss = rgb.square().sum() + (fv * fv.flip(1)).sum() + mv.sin().sum() + alpha.sum()
        tensors = [inp[k] for k in ALL] + [f, m]
        return [rgb, fv, mv], torch.autograd.grad(loss, tensors)

    (fast_vals, fast_g), (ref_vals, ref_g) = losses(True), losses(False)
    for a, b in zip(fast_vals, ref_vals):
        assert (a - b).abs().max() <= 1e-10
    for name, a, b in zip(ALL + ("feats", "masks"), fast_g, ref_g):
        assert (a - b).abs().max() <= 1e-8 * b.abs().max().clamp_min(1.0), name


@pytest.mark.parametrize("channels", [3, 12])  # 12: the torch CSR products (SPARSE_MIN_CHANNELS)
def test_pixel_subset_values_and_gradients_match_reference(channels):
    s = random_scene(300, 40, 30, seed=13, channels=channels)
    pixels = torch.randperm(1200, generator=torch.Generator().manual_seed(1))[:150]
    pixels = torch.cat([pixels, pixels[:5]])  # a repeated pixel is rendered twice
    fast = _grads(s, 1, pixels)
    inputs = {k: s[k].detach().clone().requires_grad_(True) for k in ALL}
    vals, alpha = render_reference(*(inputs[k] for k in GEOM), inputs["attributes"],
                                   s["viewmat"], s["K"], 40, 30, inputs["background"],
                                   pixels=pixels)
    loss = (vals.square() * torch.arange(vals.shape[1], dtype=vals.dtype)).sum() + alpha.sum()
    ref = [vals.detach(), alpha.detach(), *torch.autograd.grad(loss, [inputs[k] for k in ALL])]
    for name, a, b in zip(("values", "alpha") + ALL, fast, ref):
        assert (a - b).abs().max() <= 1e-8 * b.abs().max().clamp_min(1.0), name


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("channels", [3, 12])
def test_subset_of_full_weights_matches_rendering_the_pixels(backend, channels):
    """RenderWeights.subset (rows of one rasterisation) == render_weights(pixels=...): values
    and the gradients of all six inputs, repeated pixels included."""
    s = random_scene(300, 40, 30, seed=21, channels=channels)
    pixels = torch.randperm(1200, generator=torch.Generator().manual_seed(2))[:170]
    pixels = torch.cat([pixels, pixels[:6]])
    out = []
    for mode in ("direct", "subset"):
        inputs = {k: s[k].detach().clone().requires_grad_(True) for k in ALL}
        geom = [inputs[k] for k in GEOM] + [s["viewmat"], s["K"], 40, 30]
        if mode == "direct":
            W = render_weights(*geom, pixels=pixels, backend=backend)
        else:
            W = render_weights(*geom, backend=backend).subset(pixels)
        assert torch.equal(W.pixels, pixels)
        vals, alpha = composite(W, inputs["attributes"], inputs["background"])
        loss = (vals.square() * torch.arange(vals.shape[1], dtype=vals.dtype)).sum() + alpha.sum()
        out.append([vals.detach(), alpha.detach(), *torch.autograd.grad(loss, [inputs[k] for k in ALL])])
    for name, a, b in zip(("values", "alpha") + ALL, *out):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max().clamp_min(1.0), name


def test_subset_rejects_pixels_it_did_not_render():
    s = random_scene(50, 20, 10, seed=22)
    geom = [s[k] for k in GEOM] + [s["viewmat"], s["K"], 20, 10]
    part = render_weights(*geom, pixels=torch.arange(0, 200, 2))
    with pytest.raises(ValueError, match=r"pixels \[3\] were not rendered"):
        part.subset(torch.tensor([2, 3]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 200\)"):
        part.subset(torch.tensor([200]))
    blocks = render_weights(*geom, backend="torch")
    assert not blocks.can_subset
    with pytest.raises(ValueError, match="render the pixels with render_weights"):
        blocks.subset(torch.tensor([1]))


@pytest.mark.parametrize("backend,channels", [("numba", 3), ("numba", 12), ("torch", 12), ("reference", 5)])
def test_composite_of_the_used_gaussians_only(backend, channels):
    """composite(..., gaussians=weights.used_gaussians()) with only those attribute rows ==
    the full attribute matrix (values, gradients); missing or unsorted rows are rejected."""
    s = random_scene(300, 40, 30, seed=23, channels=channels)
    geom = [s[k] for k in GEOM] + [s["viewmat"], s["K"], 40, 30]
    W = render_weights(*geom, pixels=torch.arange(0, 1200, 3), backend=backend)
    used = W.used_gaussians()
    assert 0 < used.numel() < 300 and bool((used[1:] > used[:-1]).all())
    full = s["attributes"].clone().requires_grad_(True)
    part = s["attributes"][used].clone().requires_grad_(True)
    a, alpha_a = composite(W, full)
    b, alpha_b = composite(W, part, gaussians=used)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(alpha_a, alpha_b)
    g = torch.randn_like(a)
    (ga,), (gb,) = torch.autograd.grad(a, [full], g), torch.autograd.grad(b, [part], g)
    torch.testing.assert_close(ga[used], gb)
    assert float(ga[~torch.isin(torch.arange(300), used)].abs().max()) == 0.0
    with pytest.raises(ValueError, match="have weights in this view but no attributes"):
        composite(W, part[1:], gaussians=used[1:])
    with pytest.raises(ValueError, match="ascending"):
        composite(W, part, gaussians=used.flip(0))
    with pytest.raises(ValueError, match=r"len\(gaussians\)"):
        composite(W, part, gaussians=used[:-1])


def test_rows_longer_than_the_scratch_are_walked_again(monkeypatch):
    s = random_scene(400, 32, 24, seed=14)
    full = _grads(s, 1)
    monkeypatch.setattr(nb, "CAP_MAX", 2)  # most rows overflow the single-walk scratch
    small = _grads(s, 1)
    for x, y in zip(full, small):
        assert torch.equal(x, y)


def test_auto_picks_numba_on_cpu_and_renders_half_inputs_in_float32():
    s = random_scene(20, 16, 12, seed=15)
    _, _, info = render(*(s[k] for k in GEOM), s["attributes"], s["viewmat"], s["K"], 16, 12)
    assert info.backend == "numba" and isinstance(info.weights.layout, CsrLayout)
    half = {k: v.half() if torch.is_tensor(v) else v for k, v in s.items()}
    W = render_weights(*(half[k] for k in GEOM), half["viewmat"], half["K"], 16, 12, backend="numba")
    assert isinstance(W.layout, CsrLayout) and W.values.dtype == torch.float32
    ref = render_weights(*(half[k].float() for k in GEOM), half["viewmat"].float(), half["K"].float(), 16, 12)
    torch.testing.assert_close(W.to_dense(), ref.to_dense())
    with pytest.raises(ValueError, match="float32/float64"):
        render_weights(*(s[k].to(torch.int64) for k in GEOM), s["viewmat"], s["K"], 16, 12, backend="numba")


@pytest.mark.parametrize("tile", [4, 8, 16])
@pytest.mark.parametrize("subset", [False, True])
def test_compiled_binning_gives_the_torch_tile_lists(tile, subset):
    s = random_scene(700, 57, 43, seed=16, dtype=torch.float32)
    proj = project_gaussians(*(s[k] for k in GEOM), s["viewmat"], s["K"], 57, 43)
    tiles_x, tiles_y = (57 + tile - 1) // tile, (43 + tile - 1) // tile
    occupied = None
    if subset:
        occupied = torch.rand(tiles_x * tiles_y, generator=torch.Generator().manual_seed(2)) < 0.4
    ptr, ids = tile_lists(proj, s["opacities"], 57, 43, tile, occupied)
    ptr_n, ids_n = tile_lists_numba(proj, s["opacities"], 57, 43, tile, occupied)
    assert ids.numel() > 200
    assert torch.equal(ptr, torch.from_numpy(ptr_n)) and torch.equal(ids, torch.from_numpy(ids_n))


@pytest.fixture(params=["rows", "gemm", "sparse"])
def composite_path(request, monkeypatch):
    """Force the per-pair (rows) or per-tile GEMM compositing kernels, or the torch CSR products."""
    monkeypatch.setattr(nb, "SPARSE_MIN_CHANNELS", 1 if request.param == "sparse" else 1 << 30)
    if request.param == "gemm":
        monkeypatch.setattr(nb, "GEMM_MIN_CHANNELS", 1)
        monkeypatch.setattr(nb, "GEMM_MIN_DENSITY", 0.0)
    else:
        monkeypatch.setattr(nb, "GEMM_MIN_CHANNELS", 1 << 30)
    return request.param


@pytest.mark.parametrize("channels", [1, 5, 20])
def test_both_composite_paths_match_reference(composite_path, channels):
    s = random_scene(400, 40, 36, seed=17, channels=channels)
    pixels = torch.arange(40 * 36)
    fast = _grads(s, 1, pixels)
    inputs = {k: s[k].detach().clone().requires_grad_(True) for k in ALL}
    vals, alpha = render_reference(*(inputs[k] for k in GEOM), inputs["attributes"],
                                   s["viewmat"], s["K"], 40, 36, inputs["background"])
    loss = (vals.square() * torch.arange(vals.shape[1], dtype=vals.dtype)).sum() + alpha.sum()
    ref = [vals.detach(), alpha.detach(), *torch.autograd.grad(loss, [inputs[k] for k in ALL])]
    for name, a, b in zip(("values", "alpha") + ALL, fast, ref):
        assert (a - b).abs().max() <= 1e-8 * b.abs().max().clamp_min(1.0), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_composite_path_bitwise_deterministic_across_thread_counts(composite_path, dtype):
    s = random_scene(600, 48, 40, seed=18, dtype=dtype, channels=24)
    a, b = _grads(s, 2), _grads(s, 1)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_elementwise_2d_covariance_equals_the_matrix_product():
    s = random_scene(50, 32, 24, seed=19)
    q, sc = s["quats"], s["scales"]
    z = 1.0 + torch.rand(50, dtype=torch.float64)
    tx, ty = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    fx, fy = torch.tensor(30.0, dtype=torch.float64), torch.tensor(28.0, dtype=torch.float64)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], -1)
    JR = J.reshape(-1, 2, 3) @ R
    cov = JR @ covariance_3d(q, sc) @ JR.transpose(1, 2)
    a, b, c = _cov2d_terms(q, sc, z, tx, ty, fx, fy, R)
    torch.testing.assert_close(torch.stack([a, b, c], -1), cov.reshape(-1, 4)[:, [0, 1, 3]],
                               rtol=1e-12, atol=1e-12)
