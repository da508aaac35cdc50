"""The grounding decoder's per-scene work shared by the query sets of a scene.

``GroundingDecoder`` projects a scene's point tokens, positions, anchors and every layer's
point-attention keys / values once and gathers them per query set. The reference below is
the plain form: the scene's tokens copied to every query set and ``nn.MultiheadAttention``
called on them. Every layer's outputs and every gradient (parameters and inputs) must match,
in float64, for several scenes with different numbers of query sets and padding.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from liftgs.models.liftgs import build_liftgs
from liftgs.modules.decoder import GroundingDecoder, farthest_tokens

from helpers.model_inputs import TEXT_DIM, batch_of, room, small_config


def reference_decoder(dec: GroundingDecoder, point_tokens, point_xyz, point_pad, text, text_mask,
                      pool=None, scene=None):
    """Per layer (mask embeddings, token logits), with each scene's tokens copied to every
    query set and the point cross-attention run by ``nn.MultiheadAttention`` itself."""
    Bq = text.shape[0]
    index = torch.as_tensor(list(range(Bq)) if scene is None else scene, dtype=torch.long)
    point_tokens, point_xyz, point_pad = (torch.index_select(t, 0, index) for t in (point_tokens, point_xyz, point_pad))
    points = dec.point_in(point_tokens)
    pos = dec.point_pos(point_xyz)
    memory = torch.cat([dec.text_in(text), dec.no_match_memory.expand(Bq, -1, -1)], dim=1)
    real = torch.cat([text_mask, text_mask.new_ones(Bq, 1)], dim=1)
    keys = F.normalize(torch.cat([dec.token_text(text), dec.no_match.expand(Bq, 1, -1)], dim=1), dim=-1)
    q = dec.query_feat.expand(Bq, -1, -1)
    q_pos = dec.query_pos.expand(Bq, -1, -1)
    if dec.anchored:
        take = farthest_tokens(point_xyz, point_pad, q.shape[1])[..., None].expand(-1, -1, q.shape[2])
        q = q + torch.gather(points, 1, take)
        q_pos = q_pos + torch.gather(pos, 1, take)
    outputs = []
    for layer in dec.layers:
        a = layer.point_attn(q + q_pos, points + pos, points, key_padding_mask=point_pad, need_weights=False)[0]
        q = layer.norms[0](q + layer.drop(a))
        a = layer.text_attn(q + q_pos, memory, memory, key_padding_mask=~real, need_weights=False)[0]
        q = layer.norms[1](q + layer.drop(a))
        k = q + q_pos
        a = layer.self_attn(k, k, q, need_weights=False)[0]
        q = layer.norms[2](q + layer.drop(a))
        q = layer.norms[3](q + layer.drop(layer.ffn(q)))
        outputs.append(dec._predict(q, keys, real, pool))
    return outputs


def _scenes(B: int, L: int, Cp: int, seed: int):
    """Point tokens / positions / padding of B scenes with different numbers of real tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(B, L, Cp, generator=g, dtype=torch.float64)
    xyz = torch.randn(B, L, 3, generator=g, dtype=torch.float64)
    pad = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        pad[b, L - 3 * b:] = True  # scene b has 3b padded tokens
    tokens[pad] = 0.0
    xyz[pad] = 0.0
    return tokens, xyz, pad


def _queries(Bq: int, T: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(Bq, T, TEXT_DIM, generator=g, dtype=torch.float64)
    mask = torch.ones(Bq, T, dtype=torch.bool)
    for i in range(Bq):
        mask[i, T - i % T:] = False  # sets with 0 .. T-1 padded tokens
    text[~mask] = 0.0
    return text, mask


def _loss(layers, seed: int) -> torch.Tensor:
    """A random weighting of every layer's mask embeddings and (finite) token logits."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for emb, logits in layers:
        total = total + (torch.randn(emb.shape, generator=g, dtype=emb.dtype) * emb).sum()
        w = torch.randn(logits.shape, generator=g, dtype=logits.dtype)
        total = total + torch.where(torch.isfinite(logits), w * logits, 0.0).sum()
    return total


def _compare(dec: GroundingDecoder, inputs: tuple, scene, pool=None):
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    wrt = [t for t in leaves if t.requires_grad] + list(dec.parameters())
    results = []
    for fn in (GroundingDecoder.forward, reference_decoder):
        layers = fn(dec, *leaves, pool=pool, scene=scene)
        results.append((layers, torch.autograd.grad(_loss(layers, 7), wrt, allow_unused=True)))
    (got, got_grads), (ref, ref_grads) = results
    assert len(got) == len(ref) == len(dec.layers)
    for (emb, logits), (emb_r, logits_r) in zip(got, ref):
        assert emb.shape == emb_r.shape and logits.shape == logits_r.shape
        torch.testing.assert_close(emb, emb_r, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(logits, logits_r, atol=1e-10, rtol=1e-10)  # -inf at the same places
    names = ["point_tokens", "point_xyz", "text"] + [n for n, _ in dec.named_parameters()]
    for name, a, b in zip(names, got_grads, ref_grads):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"{name}: {m}")
    return got


@pytest.mark.parametrize("anchored,pooled", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("scene", [
    [0, 2, 2, 0, 2, 2],  # scene 1 has no query set; sets of a scene not adjacent
    [1, 1, 1, 1, 1],  # every set on one scene of three
    [0, 1, 2],  # one set per scene (the default)
    None,
])
def test_shared_scene_work_matches_the_per_set_reference(anchored, pooled, scene):
    torch.manual_seed(0)
    B, L, Cp, D, m = 3, 20, 8, 16, 5
    pooled_dim = 6 if pooled else None
    dec = GroundingDecoder(Cp, TEXT_DIM, D, num_layers=3, num_heads=4, ffn_dim=24, dropout=0.0,
                           num_queries=m, anchored=anchored, pooled_dim=pooled_dim).double()
    Bq = B if scene is None else len(scene)
    inputs = (*_scenes(B, L, Cp, seed=1), *_queries(Bq, 4, seed=2))
    pool = None
    if pooled:  # any differentiable function of the mask embeddings stands in for mask pooling
        proj = torch.randn(D, pooled_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        pool = lambda emb: torch.tanh(emb @ proj)  # noqa: E731
    for mode in (dec.train, dec.eval):  # dropout 0: training mode computes the same
        mode()
        got = _compare(dec, inputs, scene, pool)
        assert got[-1][0].shape == (Bq, m, D)


def test_scene_index_as_tensor_and_bad_indices():
    dec = GroundingDecoder(8, TEXT_DIM, 16, 1, 4, 24, 0.0, 5).double()
    tokens, xyz, pad = _scenes(2, 10, 8, seed=4)
    text, mask = _queries(3, 2, seed=5)
    as_list = dec(tokens, xyz, pad, text, mask, scene=[1, 0, 1])
    as_tensor = dec(tokens, xyz, pad, text, mask, scene=torch.tensor([1, 0, 1]))
    for (e1, l1), (e2, l2) in zip(as_list, as_tensor):
        assert torch.equal(e1, e2) and torch.equal(l1, l2)
    with pytest.raises(ValueError, match="scene must hold 3 scene indices"):
        dec(tokens, xyz, pad, text, mask, scene=[0, 2, 1])
    with pytest.raises(ValueError, match="scene must hold 3 scene indices"):
        dec(tokens, xyz, pad, text, mask, scene=[0, 1])
    with pytest.raises(ValueError, match="3 query sets for 2 scenes"):
        dec(tokens, xyz, pad, text, mask)


def test_attention_dropout_is_unbiased_like_multihead_attention():
    """In training mode with dropout the point attention drops attention weights: on average
    over draws it gives the attention without dropout, as nn.MultiheadAttention does."""
    torch.manual_seed(5)
    dec = GroundingDecoder(8, TEXT_DIM, 16, 1, 4, 24, 0.5, 5).double()
    layer = dec.layers[0]
    g = torch.Generator().manual_seed(6)
    q = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    points = torch.randn(2, 12, 16, generator=g, dtype=torch.float64)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 9:] = True
    keys, values = layer.point_memory(points, points)
    layer.eval()
    plain = layer.attend_points(q, keys, values, pad)
    expect = layer.point_attn(q, points, points, key_padding_mask=pad, need_weights=False)[0]
    torch.testing.assert_close(plain, expect)
    layer.train()
    n = 4000  # draws: copies of the batch, each with its own dropout
    copies = lambda x: x.repeat(n, *[1] * (x.ndim - 1))  # noqa: E731
    draws = layer.attend_points(copies(q), copies(keys), copies(values), copies(pad)).view(n, *q.shape)
    reference = layer.point_attn(copies(q), copies(points), copies(points), key_padding_mask=copies(pad),
                                 need_weights=False)[0].view(n, *q.shape)
    assert not torch.equal(draws[0], draws[1])  # dropout is active
    scale = plain.abs().mean()
    assert (draws.mean(0) - plain).abs().mean() < 0.05 * scale
    assert (reference.mean(0) - plain).abs().mean() < 0.05 * scale
    torch.testing.assert_close(draws.std(0).mean(), reference.std(0).mean(), rtol=0.1, atol=0.0)


def test_model_decode_matches_the_per_set_reference():
    """LiftGS.decode with sets sharing scenes: values and every parameter's gradient equal
    those of the model running the per-set reference decoder."""
    torch.manual_seed(2)
    model = build_liftgs(small_config(num_layers=2)).double()  # tiny preset: anchored queries
    assert model.decoder.anchored
    pts, cols, offsets, _, _ = batch_of([room(300, 1), room(200, 2, shift=(3.0, 0.0, 0.0))])
    text, mask = _queries(5, 3, seed=3)
    scene = torch.tensor([1, 0, 1, 1, 0])
    results = []
    for decoder_forward in (None, functools.partial(reference_decoder, model.decoder)):
        if decoder_forward is not None:
            model.decoder.forward = decoder_forward
        encoding = model.encode(pts.double(), cols.double(), offsets)
        out = model.decode(encoding, text, mask, query_scene=scene)
        layers = [(p.mask_logits, p.token_logits) for gr in out for p in (*gr.aux, gr)]
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(_loss(layers, 9), params, allow_unused=True)
        results.append((layers, grads))
    del model.decoder.forward
    (got, got_grads), (ref, ref_grads) = results
    for (ml, tl), (ml_r, tl_r) in zip(got, ref):
        torch.testing.assert_close(ml, ml_r, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(tl, tl_r, atol=1e-9, rtol=1e-9)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, got_grads, ref_grads):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda m: f"{name}: {m}")
