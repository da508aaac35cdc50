"""Compiled compositing ``W @ attributes`` and its backward, per screen tile (numba).

Two forms, chosen per view by ``CsrLayout.use_gemm`` (channels and fill of the tile blocks):

* rows: one pass over each row's pairs (``out[row] += w * attr[gaussian]``); the backward
  computes dL/dw as per-pair dot products and dL/dattr as per-column sums. Used when the
  dense tile blocks would be mostly zeros (< 20 % filled);
* GEMM (the usual case): a tile's weights form a small dense matrix ``W_t`` [rows,
  columns] (the columns are the tile's blended Gaussians, see ``numba_kernels``), and the
  three products are dense GEMMs through BLAS: ``out_t = W_t A_t``, ``dW_t = G_t A_tᵀ``
  (read at the pairs only) and ``part_t = W_tᵀ G_t``. Padding with zeros costs 1.6-2.7x
  the pair count in multiply-adds, but BLAS runs them several times faster than the
  per-pair loops here, even for 3 channels.

Every tile is one thread's work and one single-threaded BLAS call per product, so results
do not depend on the number of threads. Per-column attribute gradients are then summed per
Gaussian in tile order by ``numba_kernels.reduce_columns``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

OPTS = dict(cache=True, parallel=True, fastmath=False, nogil=True)


@njit(**OPTS)
def fwd_rows(row_ptr, col, col_gid, order, w, attr, out):
    """out[order[r]] = sum over row r's pairs of w * attr[gaussian] (front to back).

    Plain 2D indexing, no row views: a view per pair costs more than a few channels' work.
    """
    C = attr.shape[1]
    for r in prange(row_ptr.shape[0] - 1):
        i = order[r]
        for p in range(row_ptr[r], row_ptr[r + 1]):
            g = col_gid[col[p]]
            wp = w[p]
            for c in range(C):
                out[i, c] += wp * attr[g, c]


@njit(cache=True, fastmath=False, inline="always")
def _dot(a, b, C, buf):
    """Dot product as elementwise products then a fixed pairwise tree over ``buf``.

    ``buf`` has a power-of-two length >= max(C, 16) and zeros beyond C. Every step is an
    elementwise vector operation, so it vectorises without reassociating: a fixed order.
    """
    for c in range(C):
        buf[c] = a[c] * b[c]
    h = buf.shape[0]
    while h > 16:
        h //= 2
        for c in range(h):
            buf[c] += buf[c + h]
    for c in range(8):
        buf[c] += buf[c + 8]
    for c in range(4):
        buf[c] += buf[c + 4]
    return (buf[0] + buf[2]) + (buf[1] + buf[3])


@njit(**OPTS)
def bwd_rows(tile_ptr, order, row_ptr, col, col_gid, w, attr, g_out, need_w, need_a, g_w,
             part):
    """Per pair dL/dw = g_out[row] . attr[gaussian]; per column part += w * g_out[row].

    Below 16 channels the dot product is a left-to-right sum in plain 2D indexing (no row
    views); from 16 on, ``_dot``'s fixed pairwise tree.
    """
    C = attr.shape[1]
    Cp = 16
    while Cp < C:
        Cp *= 2
    for t in prange(tile_ptr.shape[0] - 1):
        buf = np.zeros(Cp, g_out.dtype)
        for r in range(tile_ptr[t], tile_ptr[t + 1]):
            i = order[r]
            for p in range(row_ptr[r], row_ptr[r + 1]):
                c = col[p]
                if need_w:
                    g = col_gid[c]
                    if C < 16:
                        acc = g_out[i, 0] * attr[g, 0]
                        for d in range(1, C):
                            acc += g_out[i, d] * attr[g, d]
                        g_w[p] = acc
                    else:
                        g_w[p] = _dot(g_out[i], attr[g], C, buf)
                if need_a:
                    wp = w[p]
                    for d in range(C):
                        part[c, d] += wp * g_out[i, d]


@njit(cache=True, fastmath=False, inline="always")
def _dense_tile(r0, r1, c0, c1, row_ptr, col, w, dtype):
    """W_t [rows, columns] of one tile, zeros where a Gaussian is not blended."""
    Wt = np.zeros((r1 - r0, c1 - c0), dtype)
    for r in range(r0, r1):
        for p in range(row_ptr[r], row_ptr[r + 1]):
            Wt[r - r0, col[p] - c0] = w[p]
    return Wt


@njit(cache=True, fastmath=False, inline="always")
def _gather(idx, src, dtype):
    """src[idx] as a new contiguous [len(idx), C] array."""
    out = np.empty((idx.shape[0], src.shape[1]), dtype)
    for q in range(idx.shape[0]):
        out[q] = src[idx[q]]
    return out


@njit(**OPTS)
def fwd_gemm(tile_ptr, col_ptr, order, row_ptr, col, col_gid, w, attr, out):
    """Per tile out_t = W_t @ attr[columns] (one BLAS GEMM), rows scattered to pixels."""
    for t in prange(tile_ptr.shape[0] - 1):
        r0, r1, c0, c1 = tile_ptr[t], tile_ptr[t + 1], col_ptr[t], col_ptr[t + 1]
        if r1 == r0 or c1 == c0:
            continue
        Wt = _dense_tile(r0, r1, c0, c1, row_ptr, col, w, attr.dtype)
        O = np.dot(Wt, _gather(col_gid[c0:c1], attr, attr.dtype))
        for r in range(r0, r1):
            out[order[r]] = O[r - r0]


@njit(**OPTS)
def bwd_gemm(tile_ptr, col_ptr, order, row_ptr, col, col_gid, w, attr, g_out, need_w,
             need_a, g_w, part):
    """Per tile dW_t = G_t @ A_tᵀ (kept at the pairs) and part_t = W_tᵀ @ G_t (BLAS)."""
    for t in prange(tile_ptr.shape[0] - 1):
        r0, r1, c0, c1 = tile_ptr[t], tile_ptr[t + 1], col_ptr[t], col_ptr[t + 1]
        if r1 == r0 or c1 == c0:
            continue
        G = _gather(order[r0:r1], g_out, g_out.dtype)
        if need_w:
            A = _gather(col_gid[c0:c1], attr, attr.dtype)
            D = np.dot(G, A.T)
            for r in range(r0, r1):
                for p in range(row_ptr[r], row_ptr[r + 1]):
                    g_w[p] = D[r - r0, col[p] - c0]
        if need_a:
            Wt = _dense_tile(r0, r1, c0, c1, row_ptr, col, w, g_out.dtype)
            np.dot(Wt.T, G, part[c0:c1])  # written in place
