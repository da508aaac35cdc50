"""Degree-0 spherical harmonics and RGB, as the reference 3DGS implementation converts them
(``RGB2SH`` / ``SH2RGB``): colour = 0.5 + SH_C0 * f_dc."""

from __future__ import annotations

import numpy as np

__all__ = ["SH_C0", "rgb_to_dc", "dc_to_rgb"]

SH_C0 = 0.28209479177387814
"""Y_0^0: colour = 0.5 + SH_C0 * f_dc (the reference's RGB2SH / SH2RGB)."""


def rgb_to_dc(rgb) -> np.ndarray:
    """Degree-0 SH coefficients of RGB colours in [0, 1]: (rgb - 0.5) / SH_C0."""
    return ((np.asarray(rgb, dtype=np.float64) - 0.5) / SH_C0).astype(np.float32)


def dc_to_rgb(dc) -> np.ndarray:
    """RGB in [0, 1] of degree-0 SH coefficients: clip(0.5 + SH_C0 * dc)."""
    return np.clip(0.5 + SH_C0 * np.asarray(dc, dtype=np.float64), 0.0, 1.0).astype(np.float32)
