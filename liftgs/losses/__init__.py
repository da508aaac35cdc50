"""liftgs.losses: Hungarian matcher, grounding criterion, photometric and feature losses."""

from liftgs.losses.criterion import GroundingCriterion, soft_token_ce
from liftgs.losses.feature import LowRankFeatures, feature_contrastive_loss
from liftgs.losses.mask_losses import (
    dice_loss, focal_loss, focal_loss_with_logits, pairwise_dice, pairwise_focal,
)
from liftgs.losses.matcher import HungarianMatcher
from liftgs.losses.photometric import photometric_loss

__all__ = [
    "GroundingCriterion", "HungarianMatcher", "LowRankFeatures", "dice_loss", "feature_contrastive_loss", "focal_loss",
    "focal_loss_with_logits", "pairwise_dice", "pairwise_focal", "photometric_loss", "soft_token_ce",
]
