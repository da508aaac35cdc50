"""Hungarian matching of predicted masks to target masks (paper eq. 4; MDETR / Mask2Former).

The matcher is a pure, gradient-free cost function: it returns index pairs and nothing else,
so the same matcher serves 2D pre-training (rendered masks on sampled pixels) and 3D
fine-tuning (masks on Gaussian centres).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from liftgs.losses.mask_losses import pairwise_dice, pairwise_focal


MASK_LOSSES = {"ce": (-1.0, 0.0), "focal": (0.25, 2.0)}  # (alpha, gamma); alpha < 0 = unweighted


def mask_loss_params(mask_loss: str) -> tuple[float, float]:
    """(alpha, gamma) of the per-point mask loss: "ce" (binary cross-entropy) or "focal"."""
    if mask_loss not in MASK_LOSSES:
        raise ValueError(f"mask_loss must be one of {sorted(MASK_LOSSES)}, got {mask_loss!r}")
    return MASK_LOSSES[mask_loss]


class HungarianMatcher:
    """Cost = w_mask * mask CE (or focal) + w_dice * dice - w_token * P(target's tokens | query).

    The paper gives no matching weights (d_match is "like L_ground with different weights");
    by default we use the loss weights of appendix A.1 (15 / 6 / 2).
    """

    def __init__(self, mask_weight: float = 15.0, dice_weight: float = 6.0, token_weight: float = 2.0,
                 mask_loss: str = "ce"):
        if min(mask_weight, dice_weight, token_weight) < 0 or mask_weight + dice_weight + token_weight == 0:
            raise ValueError("HungarianMatcher weights must be >= 0 and not all zero")
        self.mask_weight = float(mask_weight)
        self.dice_weight = float(dice_weight)
        self.token_weight = float(token_weight)
        self.alpha, self.gamma = mask_loss_params(mask_loss)

    @torch.no_grad()
    def cost(self, mask_probs: Tensor, token_logits: Tensor, target_masks: Tensor, target_tokens: Tensor) -> Tensor:
        """Cost matrix [m, K]. mask_probs [m, Q], token_logits [m, T+1], target_masks [K, Q] {0, 1},
        target_tokens [K, T+1] positive map (rows sum to 1)."""
        probs = mask_probs.float()
        tgt = target_masks.to(probs)
        C = self.mask_weight * pairwise_focal(probs, tgt, self.alpha, self.gamma)
        C = C + self.dice_weight * pairwise_dice(probs, tgt)
        token_prob = token_logits.float().softmax(-1)  # [m, T+1], padded columns -> 0
        C = C - self.token_weight * (token_prob @ target_tokens.to(token_prob).T)
        return C

    @torch.no_grad()
    def __call__(self, mask_probs: Tensor, token_logits: Tensor, target_masks: Tensor,
                 target_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (pred_idx [k], tgt_idx [k]) int64 with k = min(m, K), sorted by pred index."""
        m, Q = mask_probs.shape
        K = target_masks.shape[0]
        if target_masks.shape[1] != Q or target_tokens.shape != (K, token_logits.shape[1]):
            raise ValueError(
                f"matcher shapes disagree: mask_probs {list(mask_probs.shape)}, token_logits "
                f"{list(token_logits.shape)}, target_masks {list(target_masks.shape)}, "
                f"target_tokens {list(target_tokens.shape)}"
            )
        device = mask_probs.device
        if K == 0 or m == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        C = self.cost(mask_probs, token_logits, target_masks, target_tokens).cpu().numpy()
        C = np.nan_to_num(C, nan=1e6, posinf=1e6, neginf=-1e6)
        rows, cols = linear_sum_assignment(C)
        return (torch.as_tensor(rows, dtype=torch.long, device=device),
                torch.as_tensor(cols, dtype=torch.long, device=device))
