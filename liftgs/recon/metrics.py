"""Image metrics of the reconstruction: PSNR and SSIM (GenSplat summary, Key Designs 1: the
Gaussians of Stage I come from a per-scene 3DGS fit, scored like 3DGS on held-out views).

SSIM follows Wang et al. 2004 with 3DGS's settings: an 11 x 11 Gaussian window (sigma 1.5),
C1 = 0.01², C2 = 0.03² for data range 1, computed per channel and averaged over the map.
``padding="same"`` zero-pads the window at the border as 3DGS's training loss and its metric
script do; ``padding="valid"`` keeps only windows inside the image, the convention of
scikit-image (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``) and
pytorch-msssim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "gaussian_window", "SSIM_WINDOW", "SSIM_SIGMA"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32) -> Tensor:
    """The normalised 1-D Gaussian [size] whose outer product is the SSIM window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype)


def _as_nchw(img: Tensor) -> Tensor:
    """[H, W, C] -> [1, C, H, W]; [N, C, H, W] unchanged."""
    if img.ndim == 3:
        return img.permute(2, 0, 1)[None]
    if img.ndim == 4:
        return img
    raise ValueError(f"ssim: images must be [H, W, C] or [N, C, H, W], got {list(img.shape)}")


def _blur(x: Tensor, g: Tensor, padding: str) -> Tensor:
    C = x.shape[1]
    k = g.numel()
    pad = k // 2 if padding == "same" else 0
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(C, 1, 1, k), padding=(0, pad), groups=C)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(C, 1, k, 1), padding=(pad, 0), groups=C)


def ssim_map(a: Tensor, b: Tensor, padding: str = "same", window: int = SSIM_WINDOW,
             sigma: float = SSIM_SIGMA) -> Tensor:
    """Per-pixel SSIM [N, C, H', W'] of images in [0, 1] ([H, W, C] or [N, C, H, W])."""
    if padding not in ("same", "valid"):
        raise ValueError(f"ssim: padding must be 'same' or 'valid', got {padding!r}")
    if a.shape != b.shape:
        raise ValueError(f"ssim: images differ in shape: {list(a.shape)} vs {list(b.shape)}")
    x, y = _as_nchw(a), _as_nchw(b).to(a)
    if padding == "valid" and min(x.shape[-2:]) < window:
        raise ValueError(f"ssim: padding='valid' needs images of at least {window} px, got {list(x.shape[-2:])}")
    g = gaussian_window(window, sigma, x.dtype).to(x.device)
    mu_x, mu_y = _blur(x, g, padding), _blur(y, g, padding)
    sxx = _blur(x * x, g, padding) - mu_x * mu_x
    syy = _blur(y * y, g, padding) - mu_y * mu_y
    sxy = _blur(x * y, g, padding) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)
    den = (mu_x * mu_x + mu_y * mu_y + _C1) * (sxx + syy + _C2)
    return num / den


def ssim(a: Tensor, b: Tensor, padding: str = "same") -> Tensor:
    """Mean SSIM of two images in [0, 1] ([H, W, C] or [N, C, H, W]); differentiable."""
    return ssim_map(a, b, padding).mean()


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (mean squared error over every pixel and channel)."""
    mse = float(((a.detach().double() - b.detach().double()) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
