"""Compiled (numba) farthest-point sampling over one point set.

The reference is :func:`liftgs.modules.decoder.farthest_tokens` (torch ops, batched);
``tests/test_gensplat_model.py`` checks that both choose the same points. A loop of a few
hundred small torch ops per sample is slow on a busy CPU; this is one pass per chosen point.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def farthest_point_indices(xyz: np.ndarray, m: int) -> np.ndarray:
    """Indices [m] of farthest-point sampling over ``xyz`` [N, 3] float32, starting at point 0;
    ties go to the lower index, and once every point is chosen the rest are point 0."""
    N = xyz.shape[0]
    out = np.zeros(m, np.int64)
    dist = np.full(N, np.finfo(np.float32).max, np.float32)
    cur = 0
    for j in range(m):
        out[j] = cur
        cx, cy, cz = xyz[cur, 0], xyz[cur, 1], xyz[cur, 2]
        best, best_d = 0, np.float32(-1.0)
        for i in range(N):
            dx, dy, dz = xyz[i, 0] - cx, xyz[i, 1] - cy, xyz[i, 2] - cz
            d = dx * dx + dy * dy + dz * dz
            if d < dist[i]:
                dist[i] = d
            if dist[i] > best_d:
                best, best_d = i, dist[i]
        cur = best
    return out
