"""Photometric reconstruction loss (paper eq. 6): L1 plus SSIM on the rendered RGB image.

lambda_1 / lambda_2 are not given in the paper; the defaults (0.8 L1, 0.2 (1 - SSIM)) are the
3D Gaussian Splatting ones. SSIM comes from pytorch_msssim.
"""

from __future__ import annotations

from pytorch_msssim import ssim
import torch
from torch import Tensor


def photometric_loss(pred: Tensor, target: Tensor, l1_weight: float = 0.8,
                     ssim_weight: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """pred, target [H, W, 3] in [0, 1] -> (l1_weight * L1 + ssim_weight * (1 - SSIM), dict)."""
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"photometric_loss needs two [H, W, C] images, got {list(pred.shape)}, {list(target.shape)}")
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred = pred.float()
    target = target.to(pred)
    H, W = pred.shape[:2]
    win = min(11, H, W)
    win = win if win % 2 == 1 else win - 1
    # float32 whatever autocast says: SSIM's local variances underflow in bfloat16
    with torch.autocast(pred.device.type, enabled=False):
        l1 = (pred - target).abs().mean()
        s = ssim(pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], data_range=1.0, size_average=True,
                 win_size=max(win, 1))
    loss = l1_weight * l1 + ssim_weight * (1.0 - s)
    return loss, {"l1": float(l1.detach()), "ssim": float(s.detach()), "photometric": float(loss.detach())}
