"""Tests of GenSplat's referring decoder and its loss: shapes for k = 0, 1, 2 <SEG> states,
gradients, <SEG> permutation equivariance, padded tokens, a toy overfit, hand-computed losses."""

from __future__ import annotations

import math

import pytest
import torch

from liftgs.models.gensplat import GaussianInput, GenSplat, GenSplatConfig, PooledTokens
from liftgs.models.gensplat.referring import (
    ReferringConfig, ReferringDecoder, ReferringOutput, build_referring_decoder, deep_referring_loss, referring_loss,
)

TEXT_DIM = 16
SEG_DIM = 12


def small_config(**kw) -> GenSplatConfig:
    sizes = dict(encoder_channels=(8, 16, 16), encoder_out=16, latent_hidden=16, latent_dim=8, pool_tokens=24,
                 hidden_dim=32, num_layers=2, num_heads=4, ffn_dim=32, num_queries=6)
    return GenSplatConfig.tiny(text_dim=TEXT_DIM, **{**sizes, **kw})


def toy_scene(n: int = 360, seed: int = 0) -> GaussianInput:
    """A floor, a wall and two boxes on the floor; Gaussians of box 1 / box 2 are the last two thirds' halves."""
    g = torch.Generator().manual_seed(seed)
    k = n // 4
    floor = torch.rand(k, 3, generator=g) * torch.tensor([1.2, 1.2, 0.0])
    wall = torch.rand(k, 3, generator=g) * torch.tensor([1.2, 0.0, 0.8])
    box1 = torch.rand(k, 3, generator=g) * torch.tensor([0.25, 0.25, 0.0]) + torch.tensor([0.2, 0.6, 0.4])
    box2 = torch.rand(n - 3 * k, 3, generator=g) * torch.tensor([0.25, 0.25, 0.0]) + torch.tensor([0.8, 0.6, 0.4])
    means = torch.cat([floor, wall, box1, box2])
    return GaussianInput(means=means, colors=torch.rand(n, 3, generator=g), opacities=torch.rand(n, generator=g),
                         scales=torch.rand(n, 3, generator=g) * 0.04 + 1e-3, quats=torch.randn(n, 4, generator=g))


@pytest.fixture(scope="module")
def scene():
    """(latents, means, pooled, O_ins) of a tiny GenSplat on the toy scene, without gradient."""
    torch.manual_seed(0)
    model = GenSplat(small_config()).eval()
    g = toy_scene()
    with torch.no_grad():
        latents = model.encode(g)
        pooled = model.pool(latents, g.means)
        out = model.decode(latents, g.means, pooled, torch.randn(3, TEXT_DIM))
    assert out.queries is not None and out.queries.shape == (6, 32)
    return latents, g.means, pooled, out.queries


def decoder(seed: int = 0) -> ReferringDecoder:
    torch.manual_seed(seed)
    return build_referring_decoder(small_config(), seg_dim=SEG_DIM).eval()


def test_config_from_gensplat():
    c = ReferringConfig.from_gensplat(small_config(), seg_dim=SEG_DIM)
    assert (c.latent_dim, c.instance_dim, c.seg_dim, c.hidden_dim, c.num_layers, c.num_heads, c.ffn_dim) == \
        (8, 32, SEG_DIM, 32, 2, 4, 32)
    paper = ReferringConfig.from_gensplat(GenSplatConfig.paper())
    assert (paper.hidden_dim, paper.num_layers, paper.num_heads, paper.ffn_dim) == (256, 6, 8, 1024)
    with pytest.raises(ValueError, match="divisible"):
        ReferringConfig(hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="seg_dim"):
        ReferringConfig(seg_dim=0)
    assert isinstance(build_referring_decoder(c), ReferringDecoder)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_shapes(scene, k):
    latents, means, pooled, queries = scene
    dec = decoder()
    out = dec(latents, means, pooled, queries, torch.randn(k, SEG_DIM))
    N = latents.shape[0]
    assert isinstance(out, ReferringOutput)
    assert out.mask_logits.shape == (k, N) and out.exists_logits.shape == (k,) and out.segs.shape == (k, 32)
    assert len(out.layers()) == 2 and len(out.aux) == 1
    for masks, exists in out.layers():
        assert masks.shape == (k, N) and exists.shape == (k,)
        assert bool(torch.isfinite(masks).all()) and bool(torch.isfinite(exists).all())


def test_input_checks(scene):
    latents, means, pooled, queries = scene
    dec = decoder()
    segs = torch.randn(1, SEG_DIM)
    with pytest.raises(ValueError, match=r"segs \(t\^_seg\) must be \[\*, 12\]"):
        dec(latents, means, pooled, queries, torch.randn(1, 7))
    with pytest.raises(ValueError, match="instance_queries"):
        dec(latents, means, pooled, queries[:, :5], segs)
    with pytest.raises(ValueError, match="latents"):
        dec(latents[:, :3], means, pooled, queries, segs)
    with pytest.raises(ValueError, match="means must be"):
        dec(latents, means[:-1], pooled, queries, segs)
    with pytest.raises(ValueError, match="cover"):
        dec(latents[:-1], means[:-1], pooled, queries, segs)
    empty = PooledTokens(pooled.tokens, pooled.xyz, pooled.assignment, torch.zeros_like(pooled.valid))
    with pytest.raises(ValueError, match="no valid"):
        dec(latents, means, empty, queries, segs)
    with pytest.raises(ValueError, match="no query"):
        dec(latents, means, pooled, queries[:0], segs)


def test_gradients_reach_inputs_and_parameters(scene):
    latents, means, pooled, queries = scene
    dec = decoder()
    o_ins = queries.clone().requires_grad_(True)
    segs = torch.randn(2, SEG_DIM, requires_grad=True)
    out = dec(latents, means, pooled, o_ins, segs)
    targets = torch.zeros(2, latents.shape[0])
    targets[0, 180:270] = 1.0
    loss, _ = deep_referring_loss(out, targets, torch.tensor([True, False]))
    loss.backward()
    assert o_ins.grad is not None and float(o_ins.grad.abs().sum()) > 0
    assert segs.grad is not None and float(segs.grad.abs().sum()) > 0
    for name, p in dec.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_seg_rows_are_permutation_equivariant(scene):
    latents, means, pooled, queries = scene
    dec = decoder()
    segs = torch.randn(3, SEG_DIM)
    perm = torch.tensor([2, 0, 1])
    a = dec(latents, means, pooled, queries, segs)
    b = dec(latents, means, pooled, queries, segs[perm])
    for (ma, ea), (mb, eb) in zip(a.layers(), b.layers()):
        torch.testing.assert_close(mb, ma[perm], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(eb, ea[perm], atol=1e-5, rtol=1e-5)
    # and one <SEG> decoded alone is not the same as decoded next to others: they attend to each other
    alone = dec(latents, means, pooled, queries, segs[:1])
    assert not torch.allclose(alone.mask_logits[0], a.mask_logits[0], atol=1e-4)


def test_padded_tokens_change_nothing(scene):
    latents, means, pooled, queries = scene
    dec = decoder()
    segs = torch.randn(2, SEG_DIM)
    ref = dec(latents, means, pooled, queries, segs)
    g = torch.Generator().manual_seed(3)
    extra = 5
    padded = PooledTokens(tokens=torch.cat([pooled.tokens, 10 * torch.randn(extra, 8, generator=g)]),
                          xyz=torch.cat([pooled.xyz, 5 * torch.randn(extra, 3, generator=g)]),
                          assignment=pooled.assignment,
                          valid=torch.cat([pooled.valid, torch.zeros(extra, dtype=torch.bool)]))
    out = dec(latents, means, padded, queries, segs)
    for (ma, ea), (mb, eb) in zip(ref.layers(), out.layers()):
        torch.testing.assert_close(mb, ma, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(eb, ea, atol=1e-5, rtol=1e-5)
    # changing what sits in an existing invalid slot changes nothing either
    scrambled = PooledTokens(tokens=padded.tokens.clone(), xyz=padded.xyz.clone(), assignment=padded.assignment,
                             valid=padded.valid)
    scrambled.tokens[-extra:] = -3.0
    scrambled.xyz[-extra:] = 7.0
    torch.testing.assert_close(dec(latents, means, scrambled, queries, segs).mask_logits, ref.mask_logits,
                               atol=1e-5, rtol=1e-5)


def test_overfit_toy_scene(scene):
    """Two <SEG> states learn box 1 and both boxes (one mask covering two objects); a third
    refers to nothing (exists -> 0). Decoder and <SEG> states train; O_ins is fixed."""
    latents, means, pooled, queries = scene
    dec = decoder().train()
    N = latents.shape[0]
    k = N // 4
    targets = torch.zeros(3, N)
    targets[0, 2 * k:3 * k] = 1.0  # box 1
    targets[1, 2 * k:] = 1.0  # both boxes, one <SEG>
    has_target = torch.tensor([True, True, False])
    torch.manual_seed(1)
    segs = torch.nn.Parameter(torch.randn(3, SEG_DIM))
    opt = torch.optim.Adam([*dec.parameters(), segs], lr=3e-3)
    losses = []
    for _ in range(40):
        out = dec(latents, means, pooled, queries, segs)
        loss, scalars = deep_referring_loss(out, targets, has_target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(scalars["loss"])
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.1 * losses[0], losses
    with torch.no_grad():
        out = dec.eval()(latents, means, pooled, queries, segs)
    pred = out.mask_logits[:2] > 0
    iou = (pred & (targets[:2] > 0)).sum(1).float() / (pred | (targets[:2] > 0)).sum(1).clamp_min(1).float()
    assert bool((iou > 0.7).all()), iou
    assert out.exists_logits[0] > 0 and out.exists_logits[1] > 0 and out.exists_logits[2] < 0


def test_loss_values_by_hand():
    log2 = math.log(2.0)
    # logits 0 everywhere: BCE = log 2, dice = 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3, exists BCE = log 2
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    loss, s = referring_loss(logits, targets, torch.zeros(1), torch.tensor([True]))
    assert s["mask"] == pytest.approx(log2, abs=1e-6) and s["dice"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["exists"] == pytest.approx(log2, abs=1e-6)
    assert float(loss) == pytest.approx(5 * log2 + 5 / 3 + 2 * log2, abs=1e-5)
    # a zero-target row adds only its exists term; its mask row is ignored
    loss2, s2 = referring_loss(torch.tensor([[0.0, 0.0], [9.0, -9.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                               torch.tensor([0.0, 0.0]), torch.tensor([True, False]))
    assert s2["mask"] == pytest.approx(log2, abs=1e-6) and s2["dice"] == pytest.approx(1 / 3, abs=1e-6)
    assert s2["exists"] == pytest.approx(log2, abs=1e-6)
    # rendered probabilities (2D): a perfect mask costs ~0; exists logit 3 for a target: log(1 + e^-3)
    loss3, s3 = referring_loss(torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[True, False, True]]),
                               torch.tensor([3.0]), torch.tensor([True]), logits=False)
    assert s3["mask"] < 1e-5 and s3["dice"] == pytest.approx(0.0, abs=1e-6)
    assert s3["exists"] == pytest.approx(math.log1p(math.exp(-3.0)), abs=1e-6)
    # probabilities 0.5 against target [1, 0]: BCE log 2, dice 1/3 as with logits 0
    _, s4 = referring_loss(torch.full((1, 2), 0.5), targets, torch.zeros(1), torch.tensor([True]), logits=False)
    assert s4["mask"] == pytest.approx(log2, abs=1e-6) and s4["dice"] == pytest.approx(1 / 3, abs=1e-6)
    # no target at all: only exists; k = 0: zero
    _, s5 = referring_loss(torch.zeros(1, 2), targets, torch.zeros(1), torch.tensor([False]))
    assert s5["mask"] == 0.0 and s5["dice"] == 0.0 and s5["exists"] == pytest.approx(log2, abs=1e-6)
    loss6, s6 = referring_loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    assert float(loss6) == 0.0 and s6["loss"] == 0.0


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(2), torch.zeros(2), torch.zeros(1), torch.tensor([True])), "masks must be"),
    ((torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1), torch.tensor([True])), "targets"),
    ((torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(2), torch.tensor([True])), "exists_logits"),
    ((torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.tensor([1])), "has_target"),
])
def test_loss_input_checks(args, match):
    with pytest.raises(ValueError, match=match):
        referring_loss(*args)
    with pytest.raises(ValueError, match="probabilities"):
        referring_loss(torch.full((1, 2), 2.0), torch.zeros(1, 2), torch.zeros(1), torch.tensor([True]), logits=False)


def test_init_from_instance_decoder():
    """The shared parts take the instance decoder's weights; the referring-only parts keep theirs."""
    torch.manual_seed(3)
    model = GenSplat(small_config())
    ref = decoder()
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    copied = ref.init_from_instance_decoder(model.decoder)
    theirs = model.decoder.state_dict()
    assert copied and all(k.split(".", 1)[0] in ReferringDecoder.SHARED for k in copied)
    for name, value in ref.state_dict().items():
        if name in copied:
            assert torch.equal(value, theirs[name])
        else:
            assert name.split(".", 1)[0] not in ReferringDecoder.SHARED
            assert torch.equal(value, before[name])  # instance_in, seg_in, roles, exists: untouched
    assert "mask_embed.0.weight" in copied and any(k.startswith("layers.1.") for k in copied)
    other = ReferringDecoder(ReferringConfig.from_gensplat(small_config(hidden_dim=64), seg_dim=16))
    with pytest.raises(ValueError, match="init_from_instance_decoder: .* is .* in the instance decoder"):
        other.init_from_instance_decoder(model.decoder)


def test_view_prior_adds_centred_channels_to_every_layer(scene):
    latents, means, pooled, queries = scene
    plain = decoder(seed=3)
    torch.manual_seed(3)
    primed = build_referring_decoder(small_config(), seg_dim=SEG_DIM, view_prior=True).eval()
    missing = primed.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["prior_scale"] and not missing.unexpected_keys
    assert primed.prior_scale.tolist() == [2.0, 10.0]
    segs = torch.randn(2, SEG_DIM)
    N = latents.shape[0]
    prior = torch.zeros(N, 2)
    prior[180:270, 0] = 1.0  # the frames looked at box 1 only
    prior[:90, 0] = 0.5
    prior[:, 1] = prior[:, 0] * torch.linspace(-1, 1, N)
    base, out = plain(latents, means, pooled, queries, segs), primed(latents, means, pooled, queries, segs, prior)
    beta = primed.prior_scale.detach()
    shift = (prior[:, 0] - prior[:, 0].mean()) * beta[0] + (prior[:, 1] - prior[:, 1].mean()) * beta[1]
    for (a, ea), (b, eb) in zip(base.layers(), out.layers()):
        assert torch.allclose(b, a + shift, atol=1e-4) and torch.allclose(ea, eb)
    # flat channels (frames that see everything alike) change nothing
    flat = primed(latents, means, pooled, queries, segs, torch.tensor([0.7, 0.2]).expand(N, 2))
    assert torch.allclose(flat.mask_logits, base.mask_logits, atol=1e-5)
    # beta learns: the loss reaches both channels' weights
    targets = torch.zeros(2, N)
    targets[:, 180:270] = 1.0
    loss, _ = deep_referring_loss(primed(latents, means, pooled, queries, segs, prior), targets,
                                  torch.tensor([True, True]))
    loss.backward()
    assert primed.prior_scale.grad is not None and float(primed.prior_scale.grad[0]) < 0  # more prior, lower loss


def test_view_prior_is_required_or_refused(scene):
    latents, means, pooled, queries = scene
    segs = torch.randn(1, SEG_DIM)
    primed = build_referring_decoder(small_config(), seg_dim=SEG_DIM, view_prior=True)
    with pytest.raises(ValueError, match="pass view_prior"):
        primed(latents, means, pooled, queries, segs)
    with pytest.raises(ValueError, match="view_prior must be finite"):
        primed(latents, means, pooled, queries, segs, torch.zeros(latents.shape[0]))
    with pytest.raises(ValueError, match="built without one"):
        decoder()(latents, means, pooled, queries, segs, torch.zeros(latents.shape[0], 2))
