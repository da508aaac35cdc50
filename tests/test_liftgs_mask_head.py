"""The folded mask head (LiftGS.fold_mask_embeddings) against the unfolded reference.

Mask logits are ``e . (W2 gelu(W1 f + b1) + b2 + Wp phi(x) + bp)``; the model computes them
with the output layers folded into the query side. Values and every parameter's gradient
must match the plain form: the mask embeddings dotted with ``mask_proj(f)`` plus the
projected position, gathered to the points. The lazy (factored) form of pre-training must
give the eager logits at any points.
"""

from __future__ import annotations

import pytest
import torch

from liftgs.models.liftgs import build_liftgs

from helpers.model_inputs import batch_of, room, small_config


def _reference_logits(model, encoding, queries, mask) -> list[list[torch.Tensor]]:
    """Per query set, per decoder layer: emb @ (unfolded point mask features).T."""
    feats = torch.index_select(model.reference_mask_features(encoding), 0, encoding.voxels.point_to_voxel)
    starts = [0] + encoding.point_offsets[:-1].tolist()
    layers = model.decoder(encoding.tokens, encoding.token_xyz, encoding.token_pad, queries, mask.bool())
    return [[emb[b] @ feats[s:int(e)].T for emb, _ in layers]
            for b, (s, e) in enumerate(zip(starts, encoding.point_offsets.tolist()))]


def _weighted_sum(logit_sets: list[list[torch.Tensor]], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return sum((torch.randn(x.shape, generator=g) * x).sum() for layers in logit_sets for x in layers)


@pytest.mark.parametrize("mask_position", [True, False])
def test_folded_mask_logits_match_the_unfolded_head(mask_position):
    torch.manual_seed(1)
    model = build_liftgs(small_config(mask_position=mask_position)).double()
    pts, cols, offsets, queries, mask = batch_of([room(300, 1), room(200, 2, shift=(3.0, 0.0, 0.0))])
    pts, cols, queries = pts.double(), cols.double(), queries.double()

    encoding = model.encode(pts, cols, offsets)
    fast = [[*g.aux, g] for g in model.decode(encoding, queries, mask)]
    fast = [[x.mask_logits for x in layers] for layers in fast]
    _weighted_sum(fast, 0).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    ref = _reference_logits(model, model.encode(pts, cols, offsets), queries, mask)
    for f_layers, r_layers in zip(fast, ref):
        assert len(f_layers) == len(r_layers) == 2  # small_config: 2 decoder layers
        for f, r in zip(f_layers, r_layers):
            assert f.shape == r.shape
            torch.testing.assert_close(f, r, rtol=1e-10, atol=1e-10)
    _weighted_sum(ref, 0).backward()
    ref_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == ref_grads.keys() and "mask_proj.2.weight" in grads
    if mask_position:
        assert "mask_position.proj.weight" in grads
    for n in grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-9, atol=1e-10, msg=n)


def test_mask_logits_blocks_are_views_of_one_point_major_product():
    torch.manual_seed(2)
    model = build_liftgs(small_config())
    basis = torch.randn(50, model.mask_proj[0].out_features + 36)
    emb = torch.randn(3 * 4, model.mask_proj[2].out_features)
    blocks = model.mask_logits(emb, basis, parts=3)
    assert len(blocks) == 3 and all(b.shape == (4, 50) for b in blocks)
    base = blocks[0]._base if blocks[0]._base is not None else blocks[0]
    assert all((b._base if b._base is not None else b).data_ptr() == base.data_ptr() for b in blocks)
    weights, offsets = model.fold_mask_embeddings(emb)
    torch.testing.assert_close(torch.cat(blocks), weights @ basis.T + offsets[:, None])


def test_lazy_masks_give_the_eager_logits_for_any_points(model):
    """forward(lazy_masks=True) leaves the logits factored; read in full or at some points
    they equal the eager ones, per layer and per scene of a batch (values and gradients)."""
    from liftgs.models.liftgs.factors import FactoredGrounding, MaskFactors

    model.eval()
    a, b = room(300, 21), room(200, 22, shift=(2.0, 0.0, 0.0))
    pts, cols, offsets, q, qm = batch_of([a, b])
    eager = model(pts, cols, offsets, q, qm)
    lazy = model(pts, cols, offsets, q, qm, lazy_masks=True)
    idx = torch.tensor([5, 0, 150, 5, 199])
    for (_, ge), (_, gl) in zip(eager, lazy):
        assert gl.mask_logits is None and len(gl.aux) == len(ge.aux)
        for le, ll in zip([*ge.aux, ge], [*gl.aux, gl]):
            torch.testing.assert_close(ll.logits_at(), le.mask_logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ll.logits_at(idx), le.mask_logits[:, idx], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(le.logits_at(idx), le.mask_logits[:, idx])
        stacked = MaskFactors.stack([la.mask_factors for la in [*gl.aux, gl]])
        torch.testing.assert_close(stacked.point_logits(idx).T,
                                   torch.cat([la.mask_logits[:, idx] for la in [*ge.aux, ge]]), atol=1e-5, rtol=1e-5)
    w = torch.linspace(-1, 1, 6)[:, None]
    ge, gl = eager[1][1], lazy[1][1]
    grads = [torch.autograd.grad((x * w).sum(), model.mask_proj[0].weight, retain_graph=True)[0]
             for x in (ge.mask_logits[:, idx], gl.logits_at(idx))]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mask_factors"):
        FactoredGrounding(mask_logits=None, token_logits=torch.zeros(2, 3))
    model.train()
