"""Tests of the LIFT-GS model: voxelisation, contracts, initialisation, batching, persistence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from liftgs.models.liftgs import (
    GroundingResult, LiftGS, ModelConfig, build_liftgs, ground, ground_expressions, ground_tokens,
)
from liftgs.models.liftgs.inference import tokens_in_span
from liftgs.modules.voxelize import voxelize

from helpers.model_inputs import TEXT_DIM, batch_of, room, small_config


def test_voxelize_matches_loop_reference():
    a, b = room(300, 1), room(200, 2, shift=(5.0, -3.0, 1.0))
    pts, cols, offsets, _, _ = batch_of([a, b])
    vs = 0.1
    vox = voxelize(pts, cols, offsets, vs)
    groups: dict[tuple, list[int]] = {}
    start = 0
    for s, end in enumerate(offsets.tolist()):
        cells = [tuple(int(c) for c in torch.floor(p / vs).tolist()) for p in pts[start:end]]
        lo = [min(c[i] for c in cells) for i in range(3)]
        mean = pts[start:end].mean(0)
        for j, c in enumerate(cells):
            groups.setdefault((s, c[0] - lo[0], c[1] - lo[1], c[2] - lo[2]), []).append(start + j)
        start = end
    assert vox.coords.shape[0] == len(groups)
    for v, key in enumerate(map(tuple, vox.coords.tolist())):
        idx = groups[key]
        assert sorted(torch.nonzero(vox.point_to_voxel == v).flatten().tolist()) == idx
        s = key[0]
        lo, hi = (0, int(offsets[0])) if s == 0 else (int(offsets[0]), int(offsets[1]))
        centred = pts[idx] - pts[lo:hi].mean(0)
        expect = torch.cat([centred, cols[idx] - 0.5], 1).mean(0)
        torch.testing.assert_close(vox.features[v], expect, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vox.centers[v], pts[idx].mean(0), atol=1e-5, rtol=1e-5)
    assert vox.voxel_offsets.tolist()[-1] == len(groups)
    assert (vox.coords[:, 0].diff() >= 0).all()  # grouped by scene


def test_forward_contract_and_no_mutation(model):
    scenes = [room(400, 3), room(250, 4, shift=(2.0, 0.0, 0.0))]
    inputs = batch_of(scenes)
    copies = [t.clone() for t in inputs]
    out = model(*inputs)
    for t, c in zip(inputs, copies):
        assert torch.equal(t, c), "forward mutated its inputs"
    assert len(out) == 2
    T = inputs[3].shape[1]
    for (g, gr), (p, _) in zip(out, scenes):
        N = len(p)
        assert len(g) == N and g.quats.shape == (N, 4) and g.scales.shape == (N, 3)
        assert g.opacities.shape == (N,) and g.colors.shape == (N, 3) and g.feature_vectors().shape == (N, TEXT_DIM)
        assert gr.mask_logits.shape == (6, N) and gr.token_logits.shape == (6, T + 1)
        assert len(gr.aux) == 1 and gr.aux[0].mask_logits.shape == (6, N)
        assert torch.isfinite(gr.token_logits[:, -1]).all()
    assert torch.isinf(out[1][1].token_logits[:, T - 1]).all()  # padded token
    assert torch.isfinite(out[0][1].token_logits).all()


def test_initial_gaussians_sit_on_points(model):
    pts, cols = room(300, 5)
    g, _ = model(pts, cols, torch.tensor([300]), torch.randn(1, 2, TEXT_DIM), torch.ones(1, 2, dtype=torch.bool))[0]
    c = model.config
    torch.testing.assert_close(g.means, pts)
    torch.testing.assert_close(g.scales, torch.full_like(g.scales, c.scale_init * c.voxel_size))
    torch.testing.assert_close(g.opacities, torch.full_like(g.opacities, c.opacity_init))
    torch.testing.assert_close(g.colors, cols.clamp(0.01, 0.99), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.quats, torch.tensor([[1.0, 0, 0, 0]]).expand(300, 4))


@pytest.mark.parametrize("fuse_kernel,pooled", [(1, False), (3, False), (1, True)])
def test_backward_reaches_every_parameter(fuse_kernel, pooled):
    torch.manual_seed(1)
    m = build_liftgs(small_config(fuse_kernel=fuse_kernel, mask_pooled_tokens=pooled))
    inputs = batch_of([room(300, 6), room(200, 7)])
    loss = 0.0
    for g, gr in m(*inputs):
        for p in (gr, *gr.aux):
            loss = loss + p.mask_logits.sigmoid().mean() + p.token_logits[:, -1].mean()
            loss = loss + p.token_logits[:, 0].mean()
        loss = loss + sum(t.float().pow(2).mean() for t in (g.means, g.quats, g.scales, g.opacities, g.colors,
                                                         g.feature_vectors()))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert m.encoder.stem.weight.grad.abs().sum() > 0


def test_batching_equals_each_scene_alone(model):
    model.eval()
    a, b = room(350, 8), room(220, 9, shift=(3.0, 1.0, 0.0))
    pts, cols, offsets, q, qm = batch_of([a, b])
    both = model(pts, cols, offsets, q, qm)
    alone_a = model(a[0], a[1], torch.tensor([350]), q[:1], qm[:1])[0]
    alone_b = model(b[0], b[1], torch.tensor([220]), q[1:, :2], qm[1:, :2])[0]
    for (g, gr), (g1, gr1) in zip(both, [alone_a, alone_b]):
        torch.testing.assert_close(g.means, g1.means, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g.feature_vectors(), g1.feature_vectors(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gr.mask_logits, gr1.mask_logits, atol=1e-4, rtol=1e-4)
        T1 = gr1.token_logits.shape[1] - 1
        torch.testing.assert_close(gr.token_logits[:, :T1], gr1.token_logits[:, :T1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gr.token_logits[:, -1], gr1.token_logits[:, -1], atol=1e-4, rtol=1e-4)
    model.train()


def test_query_sets_sharing_a_scene_equal_each_set_alone(model):
    """Several query sets on one scene (multi-view pre-training) == one forward per set."""
    model.eval()
    a, b = room(300, 12), room(200, 13, shift=(2.0, 0.0, 0.0))
    pts, cols, offsets, _, _ = batch_of([a, b])
    g = torch.Generator().manual_seed(3)
    q = torch.randn(3, 2, TEXT_DIM, generator=g)
    qm = torch.ones(3, 2, dtype=torch.bool)
    shared = model(pts, cols, offsets, q, qm, query_scene=torch.tensor([0, 1, 0]))
    assert len(shared) == 3 and shared[0][0] is shared[2][0]  # one Gaussian set per scene
    for i, scene in enumerate([a, b, a]):
        g1, gr1 = model(scene[0], scene[1], torch.tensor([len(scene[0])]), q[i:i + 1], qm[i:i + 1])[0]
        torch.testing.assert_close(shared[i][0].means, g1.means, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shared[i][1].mask_logits, gr1.mask_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(shared[i][1].token_logits, gr1.token_logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="query_scene"):
        model(pts, cols, offsets, q, qm, query_scene=torch.tensor([0, 2, 0]))
    with pytest.raises(ValueError, match="query sets"):
        model(pts, cols, offsets, q, qm)
    model.train()


def test_mask_pooled_tokens_batch_per_scene_and_reduce_to_plain_head():
    """Pooling reads each query set's own scene (batched == alone), and with a zero pooling
    projection the model is exactly the plain one with the same weights."""
    torch.manual_seed(4)
    pooled = build_liftgs(small_config(mask_pooled_tokens=True)).eval()
    a, b = room(300, 14), room(200, 15, shift=(2.0, 0.0, 0.0))
    pts, cols, offsets, q, qm = batch_of([a, b])
    both = pooled(pts, cols, offsets, q, qm)
    for (_, gr), scene, i in zip(both, (a, b), (0, 1)):
        gr1 = pooled(scene[0], scene[1], torch.tensor([len(scene[0])]), q[i:i + 1], qm[i:i + 1])[0][1]
        torch.testing.assert_close(gr.mask_logits, gr1.mask_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gr.token_logits, gr1.token_logits, atol=1e-4, rtol=1e-4)
    plain = build_liftgs(small_config()).eval()
    missing, unexpected = plain.load_state_dict(pooled.state_dict(), strict=False)
    assert not missing and all(k.startswith("decoder.pool_proj") for k in unexpected)
    torch.nn.init.zeros_(pooled.decoder.pool_proj.weight)
    torch.nn.init.zeros_(pooled.decoder.pool_proj.bias)
    for (_, x), (_, y) in zip(pooled(pts, cols, offsets, q, qm), plain(pts, cols, offsets, q, qm)):
        for px, py in zip((x, *x.aux), (y, *y.aux)):
            torch.testing.assert_close(px.mask_logits, py.mask_logits)
            torch.testing.assert_close(px.token_logits, py.token_logits)


def test_save_load_round_trip(tmp_path, model):
    model.eval()
    path = model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((path / "config.json").read_text())["text_dim"] == TEXT_DIM
    loaded = LiftGS.from_pretrained(path).eval()
    assert loaded.config == model.config
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    inputs = batch_of([room(200, 10)])
    (g, gr), = model(*inputs)
    (g2, gr2), = loaded(*inputs)
    assert torch.equal(gr.mask_logits, gr2.mask_logits) and torch.equal(g.means, g2.means)
    model.train()
    with pytest.raises(FileNotFoundError, match="config.json"):
        LiftGS.from_pretrained(tmp_path / "nowhere")
    (path / "config.json").write_text(json.dumps({"family": "liftgs", "text_dim": 16, "bogus": 1}))
    with pytest.raises(ValueError, match="config.json"):
        LiftGS.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({"text_dim": 16}))
    with pytest.raises(ValueError, match="config.json"):
        LiftGS.from_pretrained(path)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json"):
        LiftGS.from_pretrained(path)


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig.tiny(hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="encoder_channels"):
        ModelConfig.tiny(encoder_channels=(32,))
    with pytest.raises(ValueError, match="voxel_size"):
        ModelConfig(voxel_size=0.0)
    p = ModelConfig.paper()
    assert (p.encoder_out, p.hidden_dim, p.num_layers, p.num_heads, p.ffn_dim, p.num_queries) == \
        (96, 512, 8, 8, 2048, 256)
    assert p.dropout == 0.15 and p.text_dim == 768 and p.feature_dim == 768 and max(p.encoder_channels) == 256
    assert ModelConfig.tiny(text_dim=512).feature_dim == 512
    assert ModelConfig.tiny().anchored_queries and not p.anchored_queries


def test_farthest_tokens_match_a_plain_loop():
    from liftgs.modules.decoder import farthest_tokens

    g = torch.Generator().manual_seed(4)
    xyz = torch.rand(2, 30, 3, generator=g)
    pad = torch.zeros(2, 30, dtype=torch.bool)
    pad[1, 20:] = True
    pad[1, 0] = True  # first real token of scene 1 is token 1
    got = farthest_tokens(xyz, pad, 8)
    for b in range(2):
        real = [i for i in range(30) if not pad[b, i]]
        chosen = [real[0]]
        while len(chosen) < 8:
            d = {i: min(float((xyz[b, i] - xyz[b, c]).square().sum()) for c in chosen) for i in real}
            chosen.append(max(real, key=lambda i: (d[i], -i)))
        assert got[b].tolist() == chosen
    few = farthest_tokens(xyz[:, :3], torch.zeros(2, 3, dtype=torch.bool), 5)  # m > tokens: repeats
    assert few.shape == (2, 5) and set(few[0].tolist()) == {0, 1, 2}


def test_bad_inputs_raise(model):
    pts, cols = room(100, 11)
    q, qm = torch.randn(1, 2, TEXT_DIM), torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="offsets"):
        model(pts, cols, torch.tensor([99]), q, qm)
    with pytest.raises(ValueError, match="text_dim"):
        model(pts, cols, torch.tensor([100]), torch.randn(1, 2, 5), qm)


@dataclass
class _Encoding:
    tokens: list
    spans: list
    pooled: torch.Tensor


class FakeTextEncoder:
    """Deterministic bag-of-words vectors: one token per word."""

    dim = TEXT_DIM

    def _vec(self, word: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(map(ord, word)))
        return torch.randn(TEXT_DIM, generator=g)

    def encode(self, texts):
        tokens, spans = [], []
        for t in texts:
            words, pos, sp = t.split(), 0, []
            for w in words:
                s = t.index(w, pos)
                sp.append((s, s + len(w)))
                pos = s + len(w)
            tokens.append(torch.stack([self._vec(w) for w in words]))
            spans.append(sp)
        pooled = torch.nn.functional.normalize(torch.stack([x.mean(0) for x in tokens]), dim=-1)
        return _Encoding(tokens, spans, pooled)


def test_zero_shot_ground_and_expressions(model):
    pts, cols = room(300, 12)
    was_training = model.training
    res = ground(model, FakeTextEncoder(), pts.numpy(), cols.numpy(), ["a red chair", "the table"], top_k=3)
    assert model.training == was_training
    assert len(res) == 2 and isinstance(res[0], GroundingResult) and res[0].phrase == "a red chair"
    for r in res:
        assert r.masks.shape == (3, 300) and r.masks.dtype == torch.bool
        assert (r.scores.diff() <= 0).all() and ((r.scores >= 0) & (r.scores <= 1)).all()
        assert torch.equal(r.masks, r.mask_probs > 0.5)
    # the pooled phrase vector as a single token gives the same answer via ground_tokens
    enc = FakeTextEncoder().encode(["a red chair"])
    again = ground_tokens(model, pts, cols, [enc.pooled[:1]], [[0]], top_k=3)[0]
    torch.testing.assert_close(again.scores, res[0].scores)
    ex = ground_expressions(model, FakeTextEncoder(), pts, cols, ["the chair near the door"], [(4, 9)], top_k=2)
    assert ex[0].masks.shape == (2, 300)
    assert tokens_in_span([(0, 3), (4, 9), (10, 14)], (4, 9)) == [1]


def test_mask_relevance_matches_a_loop():
    from liftgs.models.liftgs.inference import mask_relevance

    g = torch.Generator().manual_seed(3)
    inside = torch.rand(5, 40, generator=g) > 0.6
    inside[2] = False  # an empty mask ranks last (r = -1)
    sim = torch.rand(40, generator=g) * 2 - 1
    got = mask_relevance(inside, sim, 0.07)
    for j in range(5):
        r = float(sim[inside[j]].mean()) if inside[j].any() else -1.0
        assert got[j].item() == pytest.approx(float(torch.exp(torch.tensor((r - 1.0) / 0.07))), rel=1e-5)
    assert (got > 0).all() and (got <= 1).all()


def test_zero_shot_ranking_by_the_feature_field(model):
    """rank_by="features": score = mask confidence x exp((r - 1) / t), r = mean cosine of the
    phrase vector with the Gaussian features inside the returned mask (the thresholded mask cut
    to its main piece; computed here from a plain forward); "both" also multiplies by the token
    probability; "tokens" is the decoder, over the thresholded mask."""
    pts, cols = room(300, 12)
    m = model.decoder.query_feat.shape[0]
    enc = FakeTextEncoder()
    by = {r: ground(model, enc, pts, cols, ["a red chair"], top_k=m, rank_by=r)[0]
          for r in ("tokens", "features", "both")}
    model.eval()
    q = enc.encode(["a red chair"]).pooled[0]
    with torch.no_grad():
        gauss, gr = model(pts, cols, torch.tensor([300]), q[None, None], torch.ones(1, 1, dtype=torch.bool))[0]
    f = torch.nn.functional.normalize(gauss.feature_vectors(), dim=1)
    sim = (f @ torch.nn.functional.normalize(q, dim=0)).detach()
    prob = gr.token_logits.softmax(-1)[:, 0]
    for rank_by, res in by.items():
        assert (res.scores.diff() <= 0).all() and sorted(res.query_indices.tolist()) == list(range(m))
        for j, score, probs, kept in zip(res.query_indices.tolist(), res.scores.tolist(), res.mask_probs, res.masks):
            inside = probs > 0.5 if rank_by == "tokens" else kept
            assert not (kept & ~(probs > 0.5)).any()
            conf = float(probs[inside].mean()) if inside.any() else 0.0
            r = float(sim[inside].mean()) if inside.any() else -1.0
            relevance = float(torch.exp(torch.tensor((r - 1.0) / 0.07)))
            expected = {"tokens": float(prob[j]) * conf, "features": relevance * conf,
                        "both": float(prob[j]) * conf * relevance}[rank_by]
            assert score == pytest.approx(expected, rel=1e-4, abs=1e-12), (rank_by, j)
    with pytest.raises(ValueError, match="rank_by"):
        ground(model, enc, pts, cols, ["a red chair"], rank_by="colour")
    with pytest.raises(ValueError, match="feature_temperature"):
        ground(model, enc, pts, cols, ["a red chair"], rank_by="features", feature_temperature=0.0)
    narrow = build_liftgs(small_config(feature_dim=8))
    with pytest.raises(ValueError, match="as wide as the query vectors"):
        ground(narrow, enc, pts, cols, ["a red chair"], rank_by="features")
    with pytest.raises(ValueError, match="relevance_queries"):
        ground_tokens(model, pts, cols, [q[None]], [[0]], token_score=False)


def test_training_step_is_bitwise_reproducible():
    """Exact resume needs identical gradients run to run (also with several CPU threads)."""
    torch.manual_seed(2)
    m = build_liftgs(small_config(encoder_channels=(8, 16), num_layers=1))  # few ops: fast with 2 threads
    inputs = batch_of([room(300, 13), room(200, 14)])

    def grads():
        m.zero_grad()
        loss = 0.0
        for g, gr in m(*inputs):
            loss = loss + gr.mask_logits.sigmoid().mean() + gr.token_logits[:, -1].mean()
            loss = loss + g.feature_vectors().square().mean() + g.means.sum() + g.colors.mean()
        loss.backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    torch.set_num_threads(2)  # thread-order dependent accumulation is what this guards against
    try:
        first, second = grads(), grads()
    finally:
        torch.set_num_threads(1)
    assert len(first) == len(second) == len(list(m.parameters()))  # every parameter got a gradient
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_model_and_criterion_overfit_two_3d_masks():
    """Fine-tuning shape (3D masks on Gaussian centres): the grounding loss must fall."""
    from liftgs.losses import GroundingCriterion

    torch.manual_seed(0)
    m = build_liftgs(small_config(encoder_channels=(8, 16)))
    pts, cols = room(400, 0)
    target_masks = torch.stack([(pts[:, 2] == 0) & (pts[:, 0] < 0.6), pts[:, 1] == 0]).float()
    target_tokens = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    queries, mask = torch.randn(1, 2, TEXT_DIM), torch.ones(1, 2, dtype=torch.bool)
    criterion = GroundingCriterion()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=1e-4)
    losses = []
    for _ in range(70):
        _, gr = m(pts, cols, torch.tensor([400]), queries, mask)[0]
        loss, parts = criterion([(x.mask_logits.sigmoid(), x.token_logits) for x in [*gr.aux, gr]],
                                target_masks, target_tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss"])
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    assert parts["dice"] < 0.1


def test_ground_with_the_library_text_encoder(model):
    from liftgs.text import load_text_encoder

    encoder = load_text_encoder(f"hash-{TEXT_DIM}")
    pts, cols = room(200, 15)
    res = ground(model, encoder, pts, cols, ["a red chair"], top_k=2)
    assert res[0].masks.shape == (2, 200)
    # a phrase is one query, its pooled vector; an expression's target span picks its tokens
    direct = ground_tokens(model, pts, cols, [encoder.encode(["a red chair"]).pooled[:1]], [[0]], top_k=2)[0]
    assert torch.equal(res[0].masks, direct.masks) and torch.equal(res[0].scores, direct.scores)
    ex = ground_expressions(model, encoder, pts, cols, ["the red chair by the door"], [(8, 13)], top_k=2)
    assert ex[0].scores.shape == (2,) and (ex[0].scores <= 1).all()
    tokens = encoder.encode(["the red chair by the door"]).tokens[0]  # "chair" is token 2
    direct = ground_tokens(model, pts, cols, [tokens], [[2]], top_k=2)[0]
    assert torch.equal(ex[0].masks, direct.masks) and torch.equal(ex[0].scores, direct.scores)


def test_edge_inputs_no_tokens_and_float64(model):
    pts, cols = room(120, 16)
    _, gr = model(pts, cols, torch.tensor([120]), torch.zeros(1, 0, TEXT_DIM), torch.zeros(1, 0, dtype=torch.bool))[0]
    assert gr.token_logits.shape == (6, 1) and torch.isfinite(gr.token_logits).all()
    g, gr = model(pts.double(), cols.double(), torch.tensor([120]), torch.randn(1, 1, TEXT_DIM, dtype=torch.float64),
                  torch.ones(1, 1, dtype=torch.bool))[0]
    assert g.means.dtype == torch.float32 and gr.mask_logits.shape == (6, 120)


class _FixedModel(torch.nn.Module):
    """Duck-typed LiftGS with fixed proposals and Gaussian features (for ranking tests)."""

    text_dim = 4

    def __init__(self, mask_logits: torch.Tensor, features: torch.Tensor):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.mask_logits, self.features = mask_logits, features

    def encode(self, points, colors, offsets):
        return SimpleNamespace(point_features=None)

    def decode(self, encoding, queries, query_mask):
        m = self.mask_logits.shape[0]
        return [SimpleNamespace(mask_logits=self.mask_logits, token_logits=torch.zeros(m, 2))
                for _ in range(queries.shape[0])]

    def gaussian_head(self, point_features, points, colors):
        return SimpleNamespace(feature_vectors=lambda: self.features)


def test_feature_ranking_scores_the_returned_piece():
    """A proposal covering the target plus a few far look-alike points must be scored on the
    piece that is returned (the target), not on the thresholded mask with its strays."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(50, 3, generator=g) * 0.2
    other = torch.rand(50, 3, generator=g) * 0.2 + torch.tensor([2.0, 0.0, 0.0])
    stray = torch.rand(10, 3, generator=g) * 0.2 + torch.tensor([5.0, 0.0, 0.0])
    pts = torch.cat([target, other, stray])

    def feature(cos: float, n: int) -> torch.Tensor:  # unit vectors at cosine `cos` with e0
        return torch.tensor([cos, (1 - cos * cos) ** 0.5, 0.0, 0.0]).expand(n, 4)

    features = torch.cat([feature(0.8, 50), feature(0.7, 50), feature(-0.5, 10)])
    logits = torch.full((2, 110), -6.0)
    logits[0, 50:100] = 6.0  # proposal 0: the other object, mean cosine 0.7
    logits[1, :50] = 6.0  # proposal 1: the target (0.8) plus the strays (-0.5): mean 0.58 uncut
    logits[1, 100:] = 6.0
    stub = _FixedModel(logits, features)
    phrase = [torch.tensor([[1.0, 0.0, 0.0, 0.0]])]
    kw = dict(relevance_queries=phrase[0], token_score=False, top_k=2)
    cut = ground_tokens(stub, pts, torch.zeros_like(pts), phrase, [[0]], **kw)[0]
    assert cut.query_indices.tolist() == [1, 0]
    assert torch.equal(cut.masks[0], torch.arange(110) < 50)  # the strays are cut off
    conf = float(torch.sigmoid(torch.tensor(6.0)))
    assert cut.scores[0].item() == pytest.approx(conf * math.exp((0.8 - 1) / 0.07), rel=1e-4)
    whole = ground_tokens(stub, pts, torch.zeros_like(pts), phrase, [[0]], component_radius=None, **kw)[0]
    assert whole.query_indices.tolist() == [0, 1]  # uncut, the strays sink the target's proposal
