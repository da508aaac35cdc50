"""Tests of GAFS's learned relevance scorer: shapes, the "views" ablation ignoring the Gaussians,
padding, gradients, a toy overfit, visible Gaussians of a hand-built camera, hand-computed loss
values, ranking + selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftgs.models.gensplat.frames import select_views
from liftgs.models.gensplat.gafs import (
    FrameScorer, FrameScorerConfig, FrameScores, frame_scorer_loss, gather_view_gaussians, pad_view_sets,
    rank_and_select, visible_gaussians,
)

T, C = 12, 6


def small(**kw) -> FrameScorerConfig:
    return FrameScorerConfig(**{**dict(text_dim=T, latent_dim=C, dim=32, embed_dim=16, num_heads=4, ffn_dim=32,
                                       image_size=16, cnn_channels=(8, 16)), **kw})


def inputs(V=5, M=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(V, 3, 20, 24, generator=g)
    latents = torch.randn(V, M, C, generator=g)
    positions = torch.randn(V, M, 3, generator=g)
    mask = torch.rand(V, M, generator=g) < 0.7
    mask[:, 0] = True
    text = torch.randn(T, generator=g)
    return text, images, latents, positions, mask


def test_shapes_and_rng_untouched():
    state = torch.get_rng_state()
    scorer = FrameScorer(small())
    assert torch.equal(state, torch.get_rng_state())
    text, images, lat, pos, mask = inputs()
    out = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask)
    assert isinstance(out, FrameScores)
    assert out.logits.shape == (5,) and out.cosine.shape == (5,) and out.fused.shape == (5, 32)
    assert (out.cosine.abs() <= 1 + 1e-6).all()
    torch.testing.assert_close(out.logits, scorer.scale * out.cosine + scorer.bias)
    # precomputed view embeddings instead of the CNN
    emb = FrameScorer(small(view_dim=10, mode="views"))
    assert emb.image_encoder is None
    assert emb(text, view_embeddings=torch.randn(5, 10)).logits.shape == (5,)


def test_views_mode_ignores_gaussians():
    scorer = FrameScorer(small(mode="views"))
    assert len(scorer.blocks) == 0 and scorer.latent_proj is None
    text, images, lat, pos, mask = inputs()
    a = scorer(text, images).logits
    b = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask).logits
    c = scorer(text, images, latents=lat * 5 + 1, positions=-pos, gaussian_mask=~mask | mask).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    # the geometry mode does read them
    geo = FrameScorer(small())
    d = geo(text, images, latents=lat, positions=pos, gaussian_mask=mask).logits
    e = geo(text, images, latents=lat * 5 + 1, positions=pos, gaussian_mask=mask).logits
    assert (d - e).abs().max() > 1e-4


def test_padded_gaussians_do_not_matter_and_empty_views():
    scorer = FrameScorer(small(num_layers=2))
    text, images, lat, pos, mask = inputs()
    mask[2] = False  # a view that sees no Gaussian
    out = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask).logits
    assert torch.isfinite(out).all()
    lat2, pos2 = lat.clone(), pos.clone()
    lat2[~mask] = 1e3 * torch.randn(int((~mask).sum()), C)
    pos2[~mask] = 50.0
    out2 = scorer(text, images, latents=lat2, positions=pos2, gaussian_mask=mask).logits
    torch.testing.assert_close(out, out2, rtol=0, atol=1e-6)
    # extra padding columns change nothing either
    pad = lambda x, v: torch.cat([x, torch.full((x.shape[0], 3, *x.shape[2:]), v, dtype=x.dtype)], dim=1)  # noqa: E731
    out3 = scorer(text, images, latents=pad(lat, 7.0), positions=pad(pos, 3.0),
                  gaussian_mask=pad(mask, False)).logits
    torch.testing.assert_close(out, out3, rtol=0, atol=1e-5)
    # an empty view keeps its visual embedding: same score as in the views-only path of this scorer
    views_only = scorer.out_proj(scorer.out_norm(scorer.encode_views(images)))
    fused_empty = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask).fused[2]
    block_free = scorer.encode_views(images)[2]
    for block in scorer.blocks:
        block_free = block_free + block.ffn(block.norm_ffn(block_free))
    torch.testing.assert_close(fused_empty, block_free, rtol=0, atol=1e-5)
    assert views_only.shape == (5, 16)


def test_gradients_reach_every_part():
    scorer = FrameScorer(small())
    text, images, lat, pos, mask = inputs()
    out = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask)
    frame_scorer_loss(out, np.array([True, False, True, False, False])).backward()
    for name, p in scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(n.startswith("image_encoder.") for n, _ in scorer.named_parameters())
    assert any(n.startswith("blocks.0.attn.") for n, _ in scorer.named_parameters())


def toy_set(num_objects=4, V=8, per_object=4, seed=0):
    """Scenes of V views; each view sees 1-2 of the objects (per_object Gaussians each, carrying
    that object's latent plus noise). The text of object k is a fixed random vector; a view is
    visible for object k when it sees it. Every view has the same image, so the only signal is
    in the Gaussians (the "views" mode gives all views one score)."""
    g = torch.Generator().manual_seed(seed)
    obj_latent = torch.randn(num_objects, C, generator=g)
    obj_pos = torch.randn(num_objects, 3, generator=g)
    obj_text = torch.randn(num_objects, T, generator=g)
    M = 2 * per_object
    lat = torch.zeros(V, M, C)
    pos = torch.zeros(V, M, 3)
    mask = torch.zeros(V, M, dtype=torch.bool)
    seen = torch.zeros(V, num_objects, dtype=torch.bool)
    for v in range(V):
        count = 1 + int(torch.randint(2, (1,), generator=g))
        objs = torch.randperm(num_objects, generator=g)[:count]
        for j, o in enumerate(objs.tolist()):
            sl = slice(j * per_object, (j + 1) * per_object)
            lat[v, sl] = obj_latent[o] + 0.1 * torch.randn(per_object, C, generator=g)
            pos[v, sl] = obj_pos[o] + 0.2 * torch.randn(per_object, 3, generator=g)
            mask[v, sl] = True
            seen[v, o] = True
    images = torch.rand(1, 3, 16, 16, generator=g).expand(V, -1, -1, -1)
    return obj_text, images, lat, pos, mask, seen


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def test_overfit_toy_set_separates_visible_views():
    texts, images, lat, pos, mask, seen = toy_set()
    assert seen.any(0).all() and (~seen).any(0).all()  # every object has visible and invisible views
    scorer = FrameScorer(small())
    opt = torch.optim.Adam(scorer.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = sum(frame_scorer_loss(scorer(texts[k], images, latents=lat, positions=pos, gaussian_mask=mask),
                                     seen[:, k]) for k in range(texts.shape[0])) / texts.shape[0]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        all_scores, all_labels = [], []
        for k in range(texts.shape[0]):
            s = scorer(texts[k], images, latents=lat, positions=pos, gaussian_mask=mask).logits.numpy()
            assert s[seen[:, k].numpy()].min() > s[~seen[:, k].numpy()].max(), k
            all_scores.append(s)
            all_labels.append(seen[:, k].numpy())
    assert auc(np.concatenate(all_scores), np.concatenate(all_labels)) == 1.0
    # the 2D-views-only scorer cannot tell these views apart
    views_only = FrameScorer(small(mode="views"))(texts[0], images).logits
    assert torch.allclose(views_only, views_only[:1].expand_as(views_only))


def test_loss_by_hand_and_view_mask():
    logits = torch.tensor([2.0, -1.0, 0.0])
    visible = torch.tensor([True, False, True])
    want = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)) + math.log(2.0)) / 3
    assert float(frame_scorer_loss(logits, visible)) == pytest.approx(want, rel=1e-6)
    # batch [B, V] with a padded view: it does not count, whatever its logit
    batch = torch.tensor([[2.0, -1.0], [0.0, 100.0]])
    vis = np.array([[True, False], [True, False]])
    vm = np.array([[True, True], [True, False]])
    assert float(frame_scorer_loss(batch, vis, vm)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="no view"):
        frame_scorer_loss(batch, vis, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="visible must be bool"):
        frame_scorer_loss(logits, torch.tensor([1, 0, 1]))


def camera():
    """Identity pose (camera at the origin looking down +z), f = 8, principal point (4, 3), 8 x 6."""
    K = np.array([[8.0, 0, 4.0], [0, 8.0, 3.0], [0, 0, 1]])
    return np.eye(4), K, 8, 6


def test_visible_gaussians_hand_built_camera():
    viewmat, K, W, H = camera()
    means = torch.tensor([
        [0.0, 0.0, 1.0],      # 0: centre of the image (4, 3)          -> seen
        [0.0, 0.0, -1.0],     # 1: behind the camera                   -> not
        [1.0, 0.0, 1.0],      # 2: u = 12 > W                          -> not
        [0.4375, 0.0, 1.0],   # 3: u = 7.5                             -> seen
        [0.5, 0.0, 1.0],      # 4: u = 8 = W (pixel 7 ends there)      -> not
        [-0.5, -0.375, 1.0],  # 5: (0, 0), the image corner            -> seen
        [0.0, 0.0, 0.005],    # 6: nearer than the near plane          -> not
        [0.0, 0.3125, 1.0],   # 7: v = 5.5                             -> seen
        [0.0, 0.75, 2.0],     # 8: v = 6 = H                           -> not
    ])
    idx = visible_gaussians(means, viewmat, K, W, H)
    assert idx.tolist() == [0, 3, 5, 7]
    # a camera moved to z = -2 (x_cam = x_world + (0, 0, 2)): point 1 is now 1 in front, at the centre
    moved = np.eye(4)
    moved[2, 3] = 2.0
    assert 1 in visible_gaussians(means, moved, K, W, H).tolist()
    # subsampling: a reproducible subset of the visible ones
    a = visible_gaussians(means, viewmat, K, W, H, 2, torch.Generator().manual_seed(3))
    b = visible_gaussians(means, viewmat, K, W, H, 2, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and len(a) == 2 and set(a.tolist()) <= {0, 3, 5, 7}
    assert visible_gaussians(means, viewmat, K, W, H, 10, torch.Generator()).tolist() == [0, 3, 5, 7]
    with pytest.raises(ValueError, match="generator"):
        visible_gaussians(means, viewmat, K, W, H, 2)
    with pytest.raises(ValueError, match="viewmat"):
        visible_gaussians(means, np.eye(3), K, W, H)


def test_gather_and_pad_feed_the_scorer():
    viewmat, K, W, H = camera()
    means = torch.tensor([[0.0, 0.0, 1.0], [0.45, 0.0, 1.0], [0.0, 0.0, -1.0], [3.0, 0.0, 1.0]])
    latents = torch.arange(4 * C, dtype=torch.float32).reshape(4, C)
    turned = np.diag([-1.0, 1.0, -1.0, 1.0])  # turned 180° about y: sees the point behind
    lat, pos, mask = gather_view_gaussians(latents, means, np.stack([viewmat, turned]), K, W, H)
    assert mask.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(lat[0], latents[[0, 1]])
    torch.testing.assert_close(lat[1, 0], latents[2])
    torch.testing.assert_close(pos[0, 0], means[0] - means.mean(0))
    lat2, _, mask2 = pad_view_sets([torch.tensor([], dtype=torch.long)], latents, means)
    assert lat2.shape == (1, 1, C) and not mask2.any()
    scorer = FrameScorer(small())
    out = scorer(torch.randn(T), torch.rand(2, 3, 8, 8), latents=lat, positions=pos, gaussian_mask=mask)
    assert torch.isfinite(out.logits).all()


def test_rank_and_select_matches_select_views():
    g = torch.Generator().manual_seed(0)
    V = 6
    viewmats = np.stack([np.eye(4)] * V)
    viewmats[:, 0, 3] = np.arange(V) * 0.3  # cameras 0.3 apart along x
    logits = torch.randn(V, generator=g, requires_grad=True)
    got = rank_and_select(FrameScores(logits=logits, cosine=logits, fused=torch.zeros(V, 1)), viewmats, k=3)
    want = select_views(logits.detach().numpy(), viewmats, k=3)
    assert got.tolist() == want.tolist()
    with pytest.raises(ValueError, match=r"\[V\]"):
        rank_and_select(logits[None], viewmats)


def test_one_line_errors():
    with pytest.raises(ValueError, match="mode"):
        FrameScorerConfig(mode="2d")
    with pytest.raises(ValueError, match="divisible"):
        FrameScorerConfig(dim=30, num_heads=4)
    scorer = FrameScorer(small())
    text, images, lat, pos, mask = inputs()
    with pytest.raises(ValueError, match="needs latents"):
        scorer(text, images)
    with pytest.raises(ValueError, match="exactly one"):
        scorer(text, images, view_embeddings=torch.randn(5, 4), latents=lat, positions=pos, gaussian_mask=mask)
    with pytest.raises(ValueError, match="text must have shape"):
        scorer(torch.randn(T + 1), images, latents=lat, positions=pos, gaussian_mask=mask)
    with pytest.raises(ValueError, match="gaussian_mask"):
        scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask.float())
    with pytest.raises(ValueError, match="positions"):
        scorer(text, images, latents=lat, positions=pos[:, :3], gaussian_mask=mask)
    bad = lat.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        scorer(text, images, latents=bad, positions=pos, gaussian_mask=mask)
    with pytest.raises(ValueError, match="view_embeddings"):
        scorer(text, view_embeddings=torch.randn(5, 4), latents=lat, positions=pos, gaussian_mask=mask)


def test_geometric_evidence_by_hand(tmp_path):
    scorer = FrameScorer(small(evidence=True))
    assert scorer.semantic_weight.shape == (T, C) and scorer.evidence_scale.item() == pytest.approx(10.0)
    g = torch.Generator().manual_seed(5)
    weight = torch.randn(T, C, generator=g)
    scorer.set_semantic_head(weight)
    text, images, lat, pos, mask = inputs(V=3)
    all_latents = torch.randn(9, C, generator=g)
    seen = torch.zeros(3, 9, dtype=torch.bool)
    seen[0, [1, 4]] = True
    seen[1, :] = True  # view 2 sees nothing
    e = scorer.view_evidence(text, all_latents, seen)
    cos = [float(torch.nn.functional.cosine_similarity(weight @ all_latents[j], text, dim=0)) for j in range(9)]
    assert e.tolist() == pytest.approx([max(cos[1], cos[4]), max(cos), -1.0], abs=1e-5)
    out = scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask, evidence=e)
    z = (e - e.mean()) / (e.std(unbiased=False) + 1e-6)
    torch.testing.assert_close(out.logits, scorer.scale * out.cosine + scorer.bias + scorer.evidence_scale * z)
    one = scorer(text, images[:1], latents=lat[:1], positions=pos[:1], gaussian_mask=mask[:1], evidence=e[:1])
    torch.testing.assert_close(one.logits, scorer.scale * one.cosine + scorer.bias)  # one view: nothing to rank
    with pytest.raises(ValueError, match="pass evidence"):
        scorer(text, images, latents=lat, positions=pos, gaussian_mask=mask)
    with pytest.raises(ValueError, match="seen must be a bool"):
        scorer.view_evidence(text, all_latents, seen[:, :4])
    from liftgs.models.gensplat.gafs import semantic_cosine

    assert semantic_cosine(all_latents, weight, text).tolist() == pytest.approx(cos, abs=1e-5)
    assert semantic_cosine(torch.zeros(2, C), weight, text).tolist() == [0.0, 0.0]
    # gamma learns; the frozen map is saved with the scorer and comes back
    out.logits.sum().backward()
    assert scorer.evidence_scale.grad is not None and scorer.semantic_weight.grad is None
    again = FrameScorer.from_pretrained(scorer.save_pretrained(tmp_path / "s"))
    torch.testing.assert_close(again.semantic_weight, weight)
    torch.testing.assert_close(again.view_evidence(text, all_latents, seen), e)
    # only for the geometry scorer; a scorer without it refuses the helpers
    with pytest.raises(ValueError, match="needs mode 'geometry'"):
        small(mode="views", evidence=True)
    with pytest.raises(ValueError, match="no geometric evidence"):
        FrameScorer(small()).set_semantic_head(weight)
