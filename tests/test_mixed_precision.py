"""``--precision bf16``: forward and losses under bfloat16 autocast, float32 weights, gradients
and optimiser, rendering in float32 whatever autocast says."""

from __future__ import annotations

import pytest
import torch

from liftgs.testing.rooms import RoomTextEncoder

from helpers.recipe_configs import pretrain_config


def test_rendering_stays_float32_under_autocast():
    from liftgs.render import composite, render_weights

    g = torch.Generator().manual_seed(0)
    n = 120
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.2]) + torch.tensor([0, 0, 3.0])
    quats, scales, opac = torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4), torch.full((n, 3), 0.05), torch.full((n,), 0.6)
    attrs = torch.rand(n, 4, generator=g)
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    ref = composite(render_weights(means, quats, scales, opac, torch.eye(4), K, 32, 32), attrs)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = render_weights(means.bfloat16(), quats, scales, opac, torch.eye(4), K, 32, 32)
        out = composite(w, attrs.bfloat16())[0]
    assert w.values.dtype == torch.float32 and out.dtype == torch.float32
    torch.testing.assert_close(out, composite(render_weights(means.bfloat16().float(), quats, scales, opac,
                                                             torch.eye(4), K, 32, 32),
                                              attrs.bfloat16().float())[0])
    assert (out - ref).abs().mean() < 0.01  # only the inputs were rounded to bfloat16


def test_sparse_conv_under_autocast_matches_float32():
    from liftgs.modules.sparse_conv import SubMConv3d, build_rulebook

    g = torch.Generator().manual_seed(1)
    coords = torch.unique(torch.randint(0, 6, (150, 3), generator=g), dim=0)
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1)
    rb = build_rulebook(coords)
    conv = SubMConv3d(16, 8)
    x = torch.randn(len(coords), 16, generator=g, requires_grad=True)
    ref = conv(x, rb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, rb)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    out.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


@pytest.mark.parametrize("recipe", ["pretrain", "finetune"])
def test_bf16_training_keeps_float32_weights(recipe, dataset, tmp_path):
    from helpers.precision import run_both_precisions

    from liftgs.recipes.finetune import FinetuneConfig, run_finetune
    from liftgs.recipes.pretrain import run_pretrain

    def run(out, precision):
        if recipe == "pretrain":
            run_pretrain(pretrain_config(dataset, out, steps=2, ckpt_every=2, losses="ground+rgb+feat",
                                         num_pixels=128, precision=precision))
        else:
            run_finetune(FinetuneConfig(data=dataset / "data", out=out, steps=2, batch_size=1, ckpt_every=2,
                                        tensorboard=False, progress=False, precision=precision),
                         text_encoder=RoomTextEncoder())

    runs = run_both_precisions(run, tmp_path)  # same first batch, rounded: loss within 10 %
    w32, w16 = runs["fp32"][1], runs["bf16"][1]
    assert all(torch.isfinite(v).all() for v in w16.values() if v.is_floating_point())
    assert any(not torch.equal(w16[k], w32[k]) for k in w32)  # the computation did change
    with pytest.raises(ValueError, match="precision must be"):
        pretrain_config(dataset, tmp_path / "x", precision="fp16")


def test_photometric_loss_is_float32_under_autocast():
    """SSIM's local variances underflow in bfloat16 (inf loss at 128 px); the loss runs in float32."""
    from liftgs.losses import photometric_loss

    g = torch.Generator().manual_seed(3)
    target = torch.rand(128, 128, 3, generator=g)
    pred = (target + 0.05 * torch.randn(128, 128, 3, generator=g)).clamp(0, 1)
    ref, _ = photometric_loss(pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = photometric_loss(pred.bfloat16(), target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, photometric_loss(pred.bfloat16().float(), target)[0])
    assert abs(float(loss) - float(ref)) < 0.01


def test_grounding_criterion_is_finite_for_saturated_bf16_masks():
    """sigmoid(logit) rounds to exactly 1 in bfloat16 for confident points; the criterion
    computes in float32, so the clamped log-probabilities stay finite."""
    from liftgs.losses import GroundingCriterion

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 200, generator=g) * 12  # many |logit| > 9: sigmoid saturates in bf16
    targets = (torch.rand(2, 200, generator=g) < 0.3).float()
    tokens = torch.zeros(2, 4)
    tokens[0, 0] = tokens[1, 1] = 1.0
    token_logits = torch.randn(6, 4, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = torch.sigmoid(logits.bfloat16())
        assert (probs == 1).any()
        loss, parts = GroundingCriterion()([(probs, token_logits.bfloat16())], targets, tokens)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    ref, _ = GroundingCriterion()([(probs.float(), token_logits.bfloat16().float())], targets, tokens)
    torch.testing.assert_close(loss, ref)  # the rounded inputs, scored in float32
