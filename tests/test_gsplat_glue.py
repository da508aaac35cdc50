"""The CUDA training path, exercised on CPU.

On CUDA the recipes composite masks, features and RGB with ``gsplat.rasterization``. Here
``liftgs.render.reference_rasterization`` (our renderer behind gsplat's exact signature) takes
its place: its values equal the CPU renderer's, and every recipe gives the same losses,
gradients and trained weights through the gsplat glue as through the CPU weights path. Where
CUDA and gsplat exist, the last test compares the real gsplat with the substitute.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from liftgs.testing.rooms import RoomTextEncoder

from helpers.recipe_configs import pretrain_config

# gsplat 1.5's ``rasterization`` parameters, in order (gsplat/rendering.py)
GSPLAT_PARAMETERS = [
    "means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "width", "height",
    "near_plane", "far_plane", "radius_clip", "eps2d", "sh_degree", "packed", "tile_size",
    "backgrounds", "render_mode", "sparse_grad", "absgrad", "rasterize_mode", "channel_chunk",
    "distributed", "camera_model", "segmented", "covars", "with_ut", "with_eval3d",
    "radial_coeffs", "tangential_coeffs", "thin_prism_coeffs", "ftheta_coeffs",
    "rolling_shutter", "viewmats_rs",
]
GSPLAT_DEFAULTS = {"near_plane": 0.01, "far_plane": 1e10, "radius_clip": 0.0, "eps2d": 0.3,
                   "sh_degree": None, "packed": True, "tile_size": 16, "backgrounds": None,
                   "render_mode": "RGB", "rasterize_mode": "classic", "channel_chunk": 32,
                   "camera_model": "pinhole"}


def _scene(n: int = 160, seed: int = 0, channels: int = 5):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([1.2, 1.2, 0.3]) + torch.tensor([0, 0, 3.0])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    scales = 0.03 + 0.05 * torch.rand(n, 3, generator=g)
    opacities = 0.2 + 0.7 * torch.rand(n, generator=g)
    attrs = torch.rand(n, channels, generator=g)
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    return means, quats, scales, opacities, attrs, torch.eye(4), K


def test_substitute_has_gsplats_signature():
    from liftgs.render import reference_rasterization

    params = inspect.signature(reference_rasterization).parameters
    assert list(params) == GSPLAT_PARAMETERS
    for name, value in GSPLAT_DEFAULTS.items():
        assert params[name].default == value, name
    try:
        from gsplat import rasterization  # pragma: no cover - gsplat is not installed in CI
    except ImportError:
        return
    assert list(inspect.signature(rasterization).parameters) == GSPLAT_PARAMETERS  # pragma: no cover


def test_substitute_renders_like_the_cpu_renderer_in_chunks():
    """Layouts [C, H, W, D] / [C, H, W, 1], channel chunks, per-camera colours, backgrounds."""
    from liftgs.render import reference_rasterization, render

    means, quats, scales, opac, _, view, K = _scene()
    attrs = torch.rand(means.shape[0], 70, generator=torch.Generator().manual_seed(5))
    view2 = view.clone()
    view2[0, 3] = 0.2
    viewmats, Ks = torch.stack([view, view2]), torch.stack([K, K])
    bg = torch.rand(2, 70)
    colors, alphas, meta = reference_rasterization(means, quats, scales, opac, attrs, viewmats, Ks, 32, 24,
                                                   backgrounds=bg, channel_chunk=32)
    assert colors.shape == (2, 24, 32, 70) and alphas.shape == (2, 24, 32, 1) and meta["n_cameras"] == 2
    for c, vm in enumerate((view, view2)):
        image, alpha, _ = render(means, quats, scales, opac, attrs, vm, K, 32, 24, background=bg[c])
        torch.testing.assert_close(colors[c], image)
        torch.testing.assert_close(alphas[c, ..., 0], alpha)
    assert float(alphas.max()) > 0.5 and not torch.equal(colors[0], colors[1])
    one, _, _ = reference_rasterization(means, quats, scales, opac, attrs, viewmats, Ks, 32, 24,
                                        backgrounds=bg, channel_chunk=128)
    torch.testing.assert_close(one, colors)
    per_camera = torch.stack([attrs, attrs.flip(1)])
    two, _, _ = reference_rasterization(means, quats, scales, opac, per_camera, viewmats, Ks, 32, 24)
    torch.testing.assert_close(two[1], reference_rasterization(
        means, quats, scales, opac, attrs.flip(1), viewmats[1:], Ks[1:], 32, 24)[0][0])
    with pytest.raises(NotImplementedError, match="sh_degree, render_mode"):
        reference_rasterization(means, quats, scales, opac, attrs, viewmats, Ks, 32, 24, sh_degree=0,
                                render_mode="RGB+D")


def test_render_backend_gsplat_through_the_substitute():
    from liftgs.render import reference_rasterization, render
    from liftgs.render.backends.gsplat import render_gsplat

    means, quats, scales, opac, attrs, view, K = _scene()
    image, alpha, info = render_gsplat(means, quats, scales, opac, attrs, view, K, 32, 24,
                                       background=torch.ones(5), rasterize=reference_rasterization)
    ref, ref_alpha, _ = render(means, quats, scales, opac, attrs, view, K, 32, 24, background=torch.ones(5))
    torch.testing.assert_close(image, ref)
    torch.testing.assert_close(alpha, ref_alpha)
    assert info.backend == "gsplat" and info.weights is None
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        render_gsplat(means, quats, scales, opac, attrs, view, K, 32, 24)


@pytest.mark.parametrize("pixels", [None, torch.tensor([0, 5, 100, 401, 401, 767])])
def test_composite_view_paths_agree_in_values_and_gradients(pixels):
    from liftgs.render import composite_view, reference_rasterization

    out = []
    for rasterize in (None, reference_rasterization):
        leaves = [x.clone().requires_grad_(True) for x in _scene()[:5]]
        means, quats, scales, opac, attrs = leaves
        read = []

        def rows(index, attrs=attrs, read=read):
            read.append(index)
            return attrs if index is None else attrs.index_select(0, index)

        values, alpha = composite_view(means, quats, scales, opac, rows, torch.eye(4), _scene()[6], 32, 24,
                                       pixels=pixels, rasterize=rasterize)
        probe = torch.linspace(-1, 1, values.numel()).reshape(values.shape)
        grads = torch.autograd.grad((values * probe).sum() + alpha.sum(), leaves)
        out.append((values, alpha, grads, read))
    (v0, a0, g0, r0), (v1, a1, g1, r1) = out
    assert r0[0] is not None and r1 == [None]  # CPU: only the Gaussians seen; gsplat: all
    torch.testing.assert_close(v0, v1)
    torch.testing.assert_close(a0, a1)
    for x, y in zip(g0, g1):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
    assert float(g0[0].abs().sum()) > 0


@pytest.mark.parametrize("lazy", [False, True])
def test_render_view_through_the_substitute_equals_the_weights_path(lazy):
    """RGB, every layer's masks and (low-rank) features at the sampled pixels; gradients to
    geometry, colours, mask factors and feature basis."""
    from liftgs.models.liftgs.factors import FactoredGrounding, MaskFactors
    from liftgs.modules.gaussian_head import LowRankGaussians
    from liftgs.recipes.render_targets import render_view
    from liftgs.render import reference_rasterization
    from liftgs.types import Grounding

    g = torch.Generator().manual_seed(3)
    N, V, D, m, H, F = 180, 60, 6, 4, 5, 9
    means0, quats, scales, opac, colors0, view, K = _scene(N, seed=2, channels=3)
    basis0, weight0 = torch.randn(V, D, generator=g), torch.randn(F, H, generator=g)
    fbasis0, emb0 = torch.randn(N, H, generator=g), torch.randn(2, m, D, generator=g)
    rows, offs = torch.randint(0, V, (N,), generator=g), torch.randn(m, generator=g)
    pixels = torch.tensor([3, 100, 311, 312, 530, 700, 767, 312])
    out = []
    for rasterize in (None, reference_rasterization):
        leaves = [x.clone().requires_grad_(True) for x in (means0, colors0, basis0, emb0, fbasis0, weight0)]
        means, colors, basis, emb, fbasis, weight = leaves
        factors = [MaskFactors(basis, emb[i], offs, rows) for i in range(2)]
        if lazy:
            grounding = FactoredGrounding(None, torch.zeros(m, 3), mask_factors=factors[1],
                                          aux=[FactoredGrounding(None, torch.zeros(m, 3), mask_factors=factors[0])])
        else:
            grounding = Grounding(factors[1].logits(), torch.zeros(m, 3),
                                  aux=[Grounding(factors[0].logits(), torch.zeros(m, 3))])
        gauss = LowRankGaussians(means=means, quats=quats, scales=scales, opacities=opac, colors=colors,
                                 features=None, feature_basis=fbasis, feature_weight=weight,
                                 feature_bias=torch.zeros(F))
        v = render_view(gauss, grounding, view, K, 32, 24, pixels, rasterize=rasterize)
        loss = (v.rgb * torch.linspace(0, 1, v.rgb.numel()).reshape(v.rgb.shape)).sum()
        loss = loss + sum((p * torch.arange(1.0, p.shape[1] + 1)).sum() for p in v.mask_probs)
        loss = loss + v.features.dense().sum() + v.alpha.sum()
        out.append([v.rgb, *v.mask_probs, v.features.dense(), v.alpha, *torch.autograd.grad(loss, leaves)])
    assert float(out[0][1].detach().max()) > 0
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _substitute(monkeypatch) -> list[str]:
    """Make the recipes' "auto" rasteriser the substitute on CPU; returns the list of calls."""
    from liftgs.render import reference_rasterization
    from liftgs.render.backends import gsplat as backend

    calls: list[str] = []

    def fake(device):
        calls.append(str(torch.device(device)))
        return reference_rasterization

    monkeypatch.setattr(backend, "training_rasterizer", fake)
    return calls


def _assert_same_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=1e-4, msg=k)


def test_pretraining_through_the_gsplat_glue_trains_the_same_weights(dataset, tmp_path, monkeypatch):
    from liftgs.recipes.pretrain import run_pretrain
    from liftgs.train.logging import read_jsonl

    kw = dict(steps=3, losses="ground+rgb+feat", num_pixels=200, ckpt_every=3)
    run_pretrain(pretrain_config(dataset, tmp_path / "cpu", **kw))
    calls = _substitute(monkeypatch)
    run_pretrain(pretrain_config(dataset, tmp_path / "glue", **kw))
    assert calls and set(calls) == {"cpu"}
    for x, y in zip(read_jsonl(tmp_path / "cpu"), read_jsonl(tmp_path / "glue")):
        for key in ("ground", "rgb", "feat", "loss"):
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key
    _assert_same_weights(tmp_path / "cpu", tmp_path / "glue")


@pytest.mark.parametrize("stage", ["semantic", "instance"])
def test_gensplat_stages_through_the_gsplat_glue_train_the_same_weights(stage, tmp_path_factory,
                                                                        monkeypatch):
    from liftgs.recipes.gensplat import (GenSplatInstanceConfig, GenSplatSemanticConfig,
                                         run_gensplat_instance, run_gensplat_semantic)
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("glue_rooms"))
    write_point_recon(root / "data", root / "recon")
    run, make = ((run_gensplat_semantic, GenSplatSemanticConfig) if stage == "semantic"
                 else (run_gensplat_instance, GenSplatInstanceConfig))
    extra = dict(labels=root / "labels") if stage == "semantic" else {}

    def config(out):
        return make(data=root / "data", recon=root / "recon", out=out, steps=2, batch_size=1, image_size=48,
                    num_pixels=256, views_per_scene=2, ckpt_every=2, log_every=1, tensorboard=False,
                    progress=False, text_encoder="hash-32", **extra)

    run(config(root / "cpu"), text_encoder=RoomTextEncoder())
    calls = _substitute(monkeypatch)
    run(config(root / "glue"), text_encoder=RoomTextEncoder())
    assert calls
    _assert_same_weights(root / "cpu", root / "glue")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs CUDA")
def test_real_gsplat_matches_the_substitute():  # pragma: no cover - no GPU in CI
    """On a GPU: gsplat's rasterization and the substitute, same inputs (opacities < 0.99, where
    the alpha clamps of the two agree), values and gradients."""
    gsplat = pytest.importorskip("gsplat")
    from liftgs.render import reference_rasterization

    scene = [x.cuda() for x in _scene(channels=40)]
    out = []
    for fn in (gsplat.rasterization, reference_rasterization):
        leaves = [x.clone().requires_grad_(True) for x in scene[:5]]
        colors, alphas, _ = fn(*leaves, scene[5][None], scene[6][None], 32, 24, channel_chunk=32)
        grads = torch.autograd.grad(colors.sum() + alphas.sum(), leaves)
        out.append((colors, alphas, grads))
    torch.testing.assert_close(out[0][0], out[1][0], atol=2e-3, rtol=1e-2)
    torch.testing.assert_close(out[0][1], out[1][1], atol=2e-3, rtol=1e-2)
    for x, y in zip(out[0][2], out[1][2]):
        torch.testing.assert_close(x, y, atol=1e-2, rtol=5e-2)
