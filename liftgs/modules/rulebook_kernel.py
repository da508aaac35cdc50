"""Compiled (numba) construction of a 3x3x3 rulebook from its neighbour table.

The reference is :func:`liftgs.modules.sparse_conv._rulebook_from_neighbours` (torch ops);
``tests/test_sparse_conv.py`` checks that both give identical arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def dense_neighbours(keys: np.ndarray, shifts: np.ndarray, num_cells: int) -> np.ndarray:
    """Index of the voxel at key ``keys[v] + shifts[k]`` or -1: [K, V], via a dense table of
    ``num_cells`` cells (keys are unique; every shifted key stays inside the grid)."""
    V, K = keys.shape[0], shifts.shape[0]
    table = np.full(num_cells, -1, np.int64)
    for v in range(V):
        table[keys[v]] = v
    out = np.empty((K, V), np.int64)
    for k in range(K):
        d = shifts[k]
        for v in range(V):
            out[k, v] = table[keys[v] + d]
    return out


@njit(cache=True)
def rulebook_arrays(neighbour: np.ndarray):
    """``neighbour`` [K, V] int64 (-1 = no neighbour at offset k) -> src, dst [P] (pairs ordered
    by offset, then output voxel), counts [K], crow [V + 1] and the pair indices grouped by
    ``dst`` and by ``src`` (each group in pair order).

    Pairs per voxel are the same as output and as input: u is v's neighbour at offset k exactly
    when v is u's neighbour at the mirrored offset K - 1 - k, so one ``crow`` serves both."""
    K, V = neighbour.shape
    counts = np.zeros(K, np.int64)
    per_voxel = np.zeros(V, np.int64)
    for k in range(K):
        for v in range(V):
            if neighbour[k, v] >= 0:
                counts[k] += 1
                per_voxel[v] += 1
    P = counts.sum()
    src = np.empty(P, np.int64)
    dst = np.empty(P, np.int64)
    position = np.full((K, V), -1, np.int64)  # pair index of (k, v)
    p = 0
    for k in range(K):
        for v in range(V):
            u = neighbour[k, v]
            if u >= 0:
                position[k, v] = p
                src[p] = u
                dst[p] = v
                p += 1
    crow = np.zeros(V + 1, np.int64)
    for v in range(V):
        crow[v + 1] = crow[v] + per_voxel[v]
    dst_col = np.empty(P, np.int64)
    src_col = np.empty(P, np.int64)
    for v in range(V):
        q = crow[v]
        r = crow[v]
        for k in range(K):
            if position[k, v] >= 0:
                dst_col[q] = position[k, v]
                q += 1
            w = neighbour[K - 1 - k, v]  # pair (k, w) reads voxel v
            if w >= 0:
                src_col[r] = position[k, w]
                r += 1
    return src, dst, counts, crow, dst_col, src_col
