"""Tests of liftgs.losses against straightforward reference formulas and brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from liftgs.losses import (
    GroundingCriterion, HungarianMatcher, dice_loss, feature_contrastive_loss, focal_loss,
    focal_loss_with_logits, pairwise_dice, pairwise_focal, photometric_loss, soft_token_ce,
)
from liftgs.losses.criterion import distributed_count


def ref_focal(p: float, t: float, alpha=0.25, gamma=2.0) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    if t == 1:
        return -alpha * (1 - p) ** gamma * math.log(p)
    return -(1 - alpha) * p ** gamma * math.log(1 - p)


def ref_dice(p: list[float], t: list[float]) -> float:
    inter = sum(a * b for a, b in zip(p, t))
    return 1 - (2 * inter + 1) / (sum(p) + sum(t) + 1)


def test_focal_and_dice_match_reference_formulas():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 7, generator=g, dtype=torch.float64)
    probs[0, 0], probs[1, 1] = 0.0, 1.0  # clamped, stays finite
    targets = (torch.rand(3, 7, generator=g) > 0.5).double()
    focal = focal_loss(probs, targets)
    dice = dice_loss(probs, targets)
    for i in range(3):
        p, t = probs[i].tolist(), targets[i].tolist()
        assert focal[i].item() == pytest.approx(sum(ref_focal(a, b) for a, b in zip(p, t)) / 7, rel=1e-9)
        assert dice[i].item() == pytest.approx(ref_dice(p, t), rel=1e-12)
    assert torch.isfinite(focal).all()


def test_pairwise_costs_equal_per_pair_losses():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(5, 40, generator=g, dtype=torch.float64)
    targets = (torch.rand(3, 40, generator=g) > 0.6).double()
    pf, pd = pairwise_focal(probs, targets), pairwise_dice(probs, targets)
    for i, j in itertools.product(range(5), range(3)):
        torch.testing.assert_close(pf[i, j], focal_loss(probs[i:i + 1], targets[j:j + 1])[0])
        torch.testing.assert_close(pd[i, j], dice_loss(probs[i:i + 1], targets[j:j + 1])[0])


def test_focal_with_logits_agrees_with_probability_version():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 30, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(4, 30, generator=g) > 0.5).double()
    torch.testing.assert_close(focal_loss_with_logits(logits, targets), focal_loss(logits.sigmoid(), targets))


def brute_force_match(cost: torch.Tensor) -> float:
    m, K = cost.shape
    if m >= K:
        return min(sum(cost[p[j], j].item() for j in range(K)) for p in itertools.permutations(range(m), K))
    return min(sum(cost[i, p[i]].item() for i in range(m)) for p in itertools.permutations(range(K), m))


@pytest.mark.parametrize("m,K,seed", [(4, 3, 0), (5, 5, 1), (3, 4, 2), (6, 2, 3)])
def test_matcher_is_optimal_against_brute_force(m, K, seed):
    g = torch.Generator().manual_seed(seed)
    Q, T = 50, 4
    probs = torch.rand(m, Q, generator=g)
    logits = torch.randn(m, T + 1, generator=g)
    logits[:, 2] = float("-inf")  # a padded token
    target_masks = (torch.rand(K, Q, generator=g) > 0.5).float()
    target_tokens = torch.zeros(K, T + 1)
    for k in range(K):
        target_tokens[k, [0, 1, 3][k % 3]] = 1.0
    matcher = HungarianMatcher()
    pred_idx, tgt_idx = matcher(probs, logits, target_masks, target_tokens)
    assert len(pred_idx) == min(m, K) and len(set(pred_idx.tolist())) == len(pred_idx)
    cost = matcher.cost(probs, logits, target_masks, target_tokens)
    assert torch.isfinite(cost).all()
    got = cost[pred_idx, tgt_idx].sum().item()
    assert got == pytest.approx(brute_force_match(cost), abs=1e-5)
    # the cost is exactly the weighted sum of the per-pair losses
    i, j = int(pred_idx[0]), int(tgt_idx[0])
    expect = (15 * F.binary_cross_entropy(probs[i], target_masks[j])  # appendix A.1: mask cross-entropy
              + 6 * dice_loss(probs[i:i + 1], target_masks[j:j + 1])[0]
              - 2 * (logits[i].softmax(-1) * target_tokens[j]).sum())
    assert cost[i, j].item() == pytest.approx(expect.item(), rel=1e-5)
    focal_cost = HungarianMatcher(mask_loss="focal").cost(probs, logits, target_masks, target_tokens)
    expect_focal = expect + 15 * (focal_loss(probs[i:i + 1], target_masks[j:j + 1])[0]
                                  - F.binary_cross_entropy(probs[i], target_masks[j]))
    assert focal_cost[i, j].item() == pytest.approx(expect_focal.item(), rel=1e-5)


def test_proposal_ranking_ce_matches_an_explicit_loop():
    from liftgs.losses.criterion import proposal_ranking_ce

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    logits_pad = logits.clone()
    logits_pad[:, 3] = float("-inf")  # a padded token
    targets = torch.zeros(2, 5, dtype=torch.float64)
    targets[0, 1] = 1.0
    targets[1, [0, 2]] = 0.5  # a target with two positive tokens
    pred = torch.tensor([4, 1])
    got = proposal_ranking_ce(logits_pad, pred, targets)
    expect = 0.0
    for k in range(2):
        probs = logits_pad.softmax(-1)[:, targets[k] > 0].sum(-1)  # [m] P(k's tokens | j)
        expect = expect - torch.log(probs[pred[k]] / probs.sum())
    torch.testing.assert_close(got, expect)
    got.backward()
    assert torch.isfinite(logits.grad).all()
    best = torch.full((6, 5), -5.0, dtype=torch.float64)
    best[:, 4] = 5.0  # unmatched proposals say "no match"
    best[4, 4], best[1, 4] = -5.0, -5.0
    best[4, 1], best[1, 0] = 5.0, 5.0
    assert proposal_ranking_ce(best, pred, targets) < 0.1 * proposal_ranking_ce(torch.zeros(6, 5), pred, targets.float())
    crit = GroundingCriterion(rank_weight=2.0)
    probs, logits2, tm, tt = make_problem()
    _, d = crit([(probs, logits2)], tm, tt)
    assert "rank" in d and d["loss"] == pytest.approx(15 * d["mask"] + 6 * d["dice"] + 2 * d["token"] + 2 * d["rank"], rel=1e-5)
    with pytest.raises(ValueError, match="rank_weight"):
        GroundingCriterion(rank_weight=-1.0)


def test_mask_loss_choice_is_validated():
    with pytest.raises(ValueError, match="mask_loss"):
        HungarianMatcher(mask_loss="bce")
    with pytest.raises(ValueError, match="mask_loss"):
        GroundingCriterion(mask_loss="l2")


def test_matcher_with_no_targets():
    pred_idx, tgt_idx = HungarianMatcher()(torch.rand(4, 10), torch.randn(4, 3), torch.zeros(0, 10),
                                           torch.zeros(0, 3))
    assert pred_idx.numel() == 0 and tgt_idx.numel() == 0


def test_soft_token_ce_is_cross_entropy_for_one_hot_and_ignores_padding():
    logits = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 3, 2])
    one_hot = F.one_hot(target, 4).double()
    torch.testing.assert_close(soft_token_ce(logits, one_hot), F.cross_entropy(logits, target, reduction="none"))
    padded = logits.clone()
    padded[:, 1] = float("-inf")
    soft = torch.tensor([[0.5, 0, 0.5, 0]] * 5, dtype=torch.float64)
    out = soft_token_ce(padded, soft)
    lp = torch.cat([logits[:, :1], logits[:, 2:]], 1).log_softmax(-1)
    torch.testing.assert_close(out, -(0.5 * lp[:, 0] + 0.5 * lp[:, 1]))


def make_problem(seed=0, m=6, Q=80, K=2, T=3):
    g = torch.Generator().manual_seed(seed)
    target_masks = (torch.rand(K, Q, generator=g) > 0.5).float()
    target_tokens = torch.zeros(K, T + 1)
    for k in range(K):
        target_tokens[k, k] = 1.0
    probs = torch.rand(m, Q, generator=g).requires_grad_()
    logits = torch.randn(m, T + 1, generator=g).requires_grad_()
    return probs, logits, target_masks, target_tokens


def test_criterion_values_gradients_and_deep_supervision():
    probs, logits, tm, tt = make_problem()
    crit = GroundingCriterion()
    loss, d = crit([(probs, logits)], tm, tt)
    loss.backward()
    assert torch.isfinite(probs.grad).all() and torch.isfinite(logits.grad).all()
    assert set(d) == {"mask", "dice", "token", "loss"}
    assert d["loss"] == pytest.approx(15 * d["mask"] + 6 * d["dice"] + 2 * d["token"], rel=1e-5)
    # reference: explicit matching, explicit loss terms, normalised by K = 2
    pi, ti = crit.matcher(probs.detach(), logits.detach(), tm, tt)
    bce = sum(F.binary_cross_entropy(probs[i], tm[j]) for i, j in zip(pi.tolist(), ti.tolist())) / 2
    assert d["mask"] == pytest.approx(bce.item(), rel=1e-5)
    ce = 0.0
    for q in range(6):
        if q in pi.tolist():
            ce += F.cross_entropy(logits[q:q + 1], tt[ti[pi.tolist().index(q)]].argmax()[None]).item()
        else:
            ce += 0.1 * F.cross_entropy(logits[q:q + 1], torch.tensor([3])).item()
    assert d["token"] == pytest.approx(ce / 2, rel=1e-5)
    # two identical layers: twice the loss, suffixed entries for the earlier layer
    loss2, d2 = crit([(probs, logits), (probs, logits)], tm, tt)
    assert loss2.item() == pytest.approx(2 * loss.item(), rel=1e-6) and d2["mask_0"] == d2["mask"]
    # the normaliser override divides everything
    loss4, _ = crit([(probs, logits)], tm, tt, num_targets_normaliser=4.0)
    assert loss4.item() == pytest.approx(loss.item() / 2, rel=1e-6)


def test_criterion_prefers_the_right_answer_and_handles_no_targets():
    _, _, tm, tt = make_problem(seed=3)
    m, T1 = 6, tt.shape[1]
    good_p = torch.full((m, tm.shape[1]), 0.01)
    good_p[:2] = tm.clamp(0.01, 0.99)
    good_l = torch.full((m, T1), -5.0)
    good_l[:, -1] = 5.0
    good_l[0], good_l[1] = tt[0] * 10 - 5, tt[1] * 10 - 5
    bad_p, bad_l = torch.rand(m, tm.shape[1]), torch.zeros(m, T1)
    crit = GroundingCriterion()
    assert crit([(good_p, good_l)], tm, tt)[0] < 0.2 * crit([(bad_p, bad_l)], tm, tt)[0]
    probs, logits, _, _ = make_problem()
    loss, d = crit([(probs, logits)], tm[:0], tt[:0])
    loss.backward()
    assert d["mask"] == 0.0 and d["token"] > 0 and torch.isfinite(logits.grad).all()


def test_distributed_count_single_process_group(tmp_path):
    import torch.distributed as dist

    assert distributed_count(0, torch.device("cpu")) == 1.0
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed_count(5, torch.device("cpu")) == 5.0
    finally:
        dist.destroy_process_group()


def test_photometric_loss():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(24, 20, 3, generator=g)
    loss, d = photometric_loss(img, img)
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and d["ssim"] == pytest.approx(1.0, abs=1e-5)
    pred = torch.rand(24, 20, 3, generator=g).requires_grad_()
    loss, d = photometric_loss(pred, img)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and loss.item() > 0.1
    assert d["l1"] == pytest.approx((pred - img).abs().mean().item(), rel=1e-6)
    with pytest.raises(ValueError):
        photometric_loss(pred, img[:10])


def test_feature_contrastive_loss_matches_reference():
    g = torch.Generator().manual_seed(0)
    rendered = torch.randn(30, 8, generator=g, requires_grad=True)
    emb = torch.randn(4, 8, generator=g)
    ids = torch.randint(-1, 4, (30,), generator=g)
    loss = feature_contrastive_loss(rendered, ids, emb, temperature=0.1)
    loss.backward()
    ref = 0.0
    valid = [i for i in range(30) if ids[i] >= 0]
    for i in valid:
        f = F.normalize(rendered[i].detach(), dim=0)
        logits = (F.normalize(emb, dim=1) @ f) / 0.1
        ref += -(logits[ids[i]] - torch.logsumexp(logits, 0)).item()
    assert loss.item() == pytest.approx(ref / len(valid), rel=1e-5)
    assert torch.isfinite(rendered.grad).all()
    assert rendered.grad[ids < 0].abs().sum() == 0
    none = feature_contrastive_loss(rendered, torch.full((30,), -1), emb)
    assert none.item() == 0.0 and none.requires_grad


def test_feature_loss_extra_negatives_match_reference():
    """Extra negatives join every pixel's alternatives, except those naming its own segment
    (cosine above ``same_above``); values and gradients against a per-pixel loop."""
    g = torch.Generator().manual_seed(1)
    rendered = torch.randn(20, 6, generator=g, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(3, 6, generator=g, dtype=torch.float64)
    neg = torch.cat([torch.randn(5, 6, generator=g, dtype=torch.float64), emb[1:2] * 2.0])  # row 5 == segment 1
    ids = torch.randint(-1, 3, (20,), generator=g)
    ids[:3] = 1
    loss = feature_contrastive_loss(rendered, ids, emb, temperature=0.2, negatives=neg, same_above=0.8)
    (grad,) = torch.autograd.grad(loss, rendered)
    r = rendered.detach().clone().requires_grad_(True)
    en, nn_ = F.normalize(emb, dim=1), F.normalize(neg, dim=1)
    terms = []
    for i in range(20):
        if ids[i] < 0:
            continue
        f = F.normalize(r[i], dim=0)
        keep = [j for j in range(neg.shape[0]) if float(en[ids[i]] @ nn_[j]) <= 0.8]
        logits = torch.cat([en @ f, nn_[keep] @ f]) / 0.2
        terms.append(torch.logsumexp(logits, 0) - logits[ids[i]])
    ref = torch.stack(terms).mean()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(grad, r.grad, rtol=1e-10, atol=1e-12)
    plain = feature_contrastive_loss(rendered, ids, emb, temperature=0.2)
    all_same = feature_contrastive_loss(rendered, ids, emb, temperature=0.2, negatives=neg, same_above=-2.0)
    assert all_same.item() == pytest.approx(plain.item(), rel=1e-12)  # every negative dropped
    assert feature_contrastive_loss(rendered, ids, emb, temperature=0.2, negatives=neg[:0]).item() == plain.item()
    with pytest.raises(ValueError, match="negatives"):
        feature_contrastive_loss(rendered, ids, emb, negatives=neg[:, :4])


@pytest.mark.parametrize("with_bias", [True, False])
def test_factored_feature_loss_matches_dense(with_bias):
    """The loss on LowRankFeatures == the loss on the dense [Np, F] it stands for (values and
    gradients for basis, alpha, weight and bias), with and without extra negatives."""
    from liftgs.losses import LowRankFeatures

    g = torch.Generator().manual_seed(2)
    Np, H, Fd = 40, 5, 9
    leaves = [torch.randn(Np, H, generator=g, dtype=torch.float64), torch.rand(Np, generator=g, dtype=torch.float64),
              torch.randn(Fd, H, generator=g, dtype=torch.float64), torch.randn(Fd, generator=g, dtype=torch.float64)]
    if not with_bias:
        leaves = leaves[:3]
    emb = torch.randn(4, Fd, generator=g, dtype=torch.float64)
    neg = torch.randn(7, Fd, generator=g, dtype=torch.float64)
    ids = torch.randint(-1, 4, (Np,), generator=g)
    for negatives in (None, neg):
        a = [x.clone().requires_grad_(True) for x in leaves]
        b = [x.clone().requires_grad_(True) for x in leaves]
        low = LowRankFeatures(*a)
        dense = LowRankFeatures(*b).dense()
        assert low.shape == tuple(dense.shape)
        torch.testing.assert_close(low.norm(), dense.norm(dim=1), rtol=1e-12, atol=1e-12)
        la = feature_contrastive_loss(low, ids, emb, temperature=0.1, negatives=negatives)
        lb = feature_contrastive_loss(dense, ids, emb, temperature=0.1, negatives=negatives)
        la.backward()
        lb.backward()
        assert la.item() == pytest.approx(lb.item(), rel=1e-12)
        for x, y in zip(a, b):
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-10, atol=1e-12)
    none = feature_contrastive_loss(LowRankFeatures(*leaves), torch.full((Np,), -1), emb)
    assert none.item() == 0.0
