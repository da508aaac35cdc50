"""Grounding loss (paper eq. 3-5, appendix A.1): match, then a mask cross-entropy + dice on
masks and a soft token cross-entropy, for every decoder layer (deep supervision).

Appendix A.1 weighs "the mask cross-entropy loss, soft token loss, and Dice loss" 15 / 2 / 6:
the mask term is a per-point binary cross-entropy (``mask_loss="ce"``, the default). A focal
variant (``"focal"``, alpha 0.25, gamma 2) is kept for comparison; with ~1-2 % of the points
positive it pushes every logit down faster than dice can pull the target up, the sigmoids
saturate and the masks collapse to empty (measured: 3D fine-tuning from scratch never left
dice ~0.9 with it).

Unmatched queries are pushed to the no-match column (Sec 3.2.1), weighted by
``no_match_weight`` like MDETR's ``eos_coef`` (0.1): with 256 proposals and at most 8 targets
the no-match term would otherwise dominate. Everything is summed over queries and divided
by the number of targets, all-reduced across workers and clamped >= 1 (Mask2Former).
"""

from __future__ import annotations

import torch
from torch import Tensor

from liftgs.losses.mask_losses import dice_loss, focal_loss
from liftgs.losses.matcher import HungarianMatcher, mask_loss_params


def soft_token_ce(token_logits: Tensor, targets: Tensor) -> Tensor:
    """-sum_j target_j log softmax(logits)_j per row: [m, T+1], [m, T+1] -> [m] (eq. 5, soft).

    Padded columns hold -inf logits and zero targets; they contribute nothing.
    """
    logp = token_logits.log_softmax(-1)
    return -torch.where(targets > 0, targets * logp, torch.zeros_like(logp)).sum(-1)


def distributed_count(count: float, device: torch.device | None = None) -> float:
    """Mean of ``count`` over workers when torch.distributed is running, clamped >= 1 (the
    collective runs on the process's collective device; ``device`` is not needed)."""
    from liftgs.train.distributed import normaliser

    return normaliser(count)


def proposal_ranking_ce(token_logits: Tensor, pred_idx: Tensor, target_tokens: Tensor) -> Tensor:
    """Cross-entropy over *proposals* (summed over targets): target k's matched proposal
    ``pred_idx[k]`` should give k's positive tokens more probability than any other proposal.

    The token loss (eq. 5) normalises each proposal's row over tokens; grounding one phrase
    ranks the proposals of a column instead (``inference.ground_tokens``). This term trains
    that ranking directly. token_logits [m, T+1], pred_idx [k], target_tokens [k, T+1]."""
    if pred_idx.numel() == 0:
        return token_logits.sum() * 0.0
    logp = token_logits.log_softmax(-1)  # [m, T+1] row-normalised, as at inference
    pos = target_tokens > 0  # [k, T+1]
    score = torch.where(pos[:, None, :], logp[None, :, :], torch.full_like(logp[None], float("-inf")))
    score = score.logsumexp(-1)  # [k, m] log P(k's tokens | proposal)
    return torch.nn.functional.cross_entropy(score, pred_idx, reduction="sum")


class GroundingCriterion:
    """``(loss, loss_dict)`` for a list of decoder layers (earliest first, final last)."""

    def __init__(self, matcher: HungarianMatcher | None = None, mask_weight: float = 15.0,
                 token_weight: float = 2.0, dice_weight: float = 6.0, no_match_weight: float = 0.1,
                 mask_loss: str = "ce", rank_weight: float = 0.0):
        self.alpha, self.gamma = mask_loss_params(mask_loss)
        self.matcher = matcher if matcher is not None else HungarianMatcher(mask_loss=mask_loss)
        self.weights = {"mask": float(mask_weight), "token": float(token_weight), "dice": float(dice_weight)}
        if rank_weight < 0:
            raise ValueError(f"rank_weight must be >= 0, got {rank_weight}")
        if rank_weight > 0:
            self.weights["rank"] = float(rank_weight)
        self.no_match_weight = float(no_match_weight)

    def __call__(self, layers: list[tuple[Tensor, Tensor]], target_masks: Tensor, target_tokens: Tensor,
                 num_targets_normaliser: float | None = None) -> tuple[Tensor, dict[str, float]]:
        """layers: [(mask_probs [m, Q], token_logits [m, T+1])]; target_masks [K, Q] {0, 1};
        target_tokens [K, T+1] (rows sum to 1). ``num_targets_normaliser`` overrides the
        (all-reduced) target count, e.g. when a batch of scenes is summed by the caller."""
        if not layers:
            raise ValueError("GroundingCriterion needs at least one (mask_probs, token_logits) layer")
        device = layers[-1][0].device
        norm = num_targets_normaliser
        if norm is None:
            norm = distributed_count(target_masks.shape[0], device)
        norm = max(float(norm), 1.0)
        # float32 whatever autocast says: in bfloat16, 1 - 1e-6 rounds to 1 and the clamped
        # log-probabilities of the mask terms become infinite
        layers = [(probs.float(), logits.float()) for probs, logits in layers]
        total = layers[-1][0].new_zeros(())
        loss_dict: dict[str, float] = {}
        for i, (probs, logits) in enumerate(layers):
            with torch.autocast(device.type, enabled=False):
                terms = self.layer_losses(probs, logits, target_masks.float(), target_tokens.float())
            suffix = "" if i == len(layers) - 1 else f"_{i}"
            for name, value in terms.items():
                value = value / norm
                total = total + self.weights[name] * value
                loss_dict[name + suffix] = float(value.detach())
        loss_dict["loss"] = float(total.detach())
        return total, loss_dict

    def layer_losses(self, probs: Tensor, logits: Tensor, target_masks: Tensor,
                     target_tokens: Tensor) -> dict[str, Tensor]:
        """Un-normalised sums of mask (cross-entropy or focal), dice and token losses for one layer."""
        pred_idx, tgt_idx = self.matcher(probs.detach(), logits.detach(), target_masks, target_tokens)
        tgt = target_masks[tgt_idx].to(probs)
        matched = torch.index_select(probs, 0, pred_idx)  # [k, Q]
        mask = focal_loss(matched, tgt, self.alpha, self.gamma).sum()  # gamma 0, no alpha = plain CE
        dice = dice_loss(matched, tgt).sum()
        m, T1 = logits.shape
        token_targets = logits.new_zeros(m, T1)
        token_targets[:, -1] = 1.0  # unmatched -> no-match
        token_targets[pred_idx] = target_tokens[tgt_idx].to(logits)
        weight = torch.full((m,), self.no_match_weight, dtype=logits.dtype, device=logits.device)
        weight[pred_idx] = 1.0
        token = (soft_token_ce(logits, token_targets) * weight).sum()
        out = {"mask": mask, "dice": dice, "token": token}
        if "rank" in self.weights:
            out["rank"] = proposal_ranking_ce(logits, pred_idx, target_tokens[tgt_idx])
        return out
