"""Compiled CPU kernels (numba) for the sparse weights and compositing, forward and backward.

Each kernel loops over independent rows (pixels, or Gaussians through the transposed pair
list), so no two threads ever write the same value and every sum runs in a fixed order:
results are bitwise identical for any thread count. No torch here; ``numba_backend`` wraps
these in autograd Functions. Arithmetic stays in the input dtype: constants arrive as a small
array ``k`` = [0.5, ALPHA_MAX, ALPHA_MIN, T_MIN, 1.0, 0.0] of that dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OPTS = dict(cache=True, parallel=True, fastmath=False, nogil=True)


@njit(cache=True, fastmath=False, inline="always")
def _walk(i, xs, ys, tile, list_ptr, list_ids, m, con, op, k, ids, w, out, write):
    """Front-to-back blending of pixel i (gsplat rules); returns (pairs, T_final)."""
    half, amax, amin, tmin, one = k[0], k[1], k[2], k[3], k[4]
    t = tile[i]
    x, y = xs[i], ys[i]
    T = one
    n = 0
    for j in range(list_ptr[t], list_ptr[t + 1]):
        g = list_ids[j]
        dx = x - m[g, 0]
        dy = y - m[g, 1]
        sig = (dx * (half * con[g, 0])) * dx + (dy * (half * con[g, 2])) * dy + (dx * con[g, 1]) * dy
        if not sig >= k[5]:
            continue
        a = op[g] * math.exp(-sig)
        if a > amax:
            a = amax
        if not a >= amin:
            continue
        nT = T * (one - a)
        if nT <= tmin:
            break
        if write:
            ids[out + n] = g
            w[out + n] = a * T
        n += 1
        T = nT
    return n, T


@njit(**OPTS)
def count_pairs(xs, ys, tile, list_ptr, list_ids, m, con, op, k, counts, T_final):
    """Pass 1: number of blended Gaussians and final transmittance per pixel."""
    dummy_i = np.zeros(0, np.int32)
    dummy_w = np.zeros(0, xs.dtype)
    for i in prange(xs.shape[0]):
        n, T = _walk(i, xs, ys, tile, list_ptr, list_ids, m, con, op, k, dummy_i, dummy_w, 0,
                     False)
        counts[i] = n
        T_final[i] = T


@njit(**OPTS)
def write_pairs(xs, ys, tile, list_ptr, list_ids, m, con, op, k, row_ptr, ids, w):
    """Pass 2: the pairs (Gaussian id, weight alpha * T) of each pixel, front to back."""
    for i in prange(xs.shape[0]):
        _walk(i, xs, ys, tile, list_ptr, list_ids, m, con, op, k, ids, w, row_ptr[i], True)


@njit(cache=True, fastmath=False)
def transpose_pairs(row_ptr, ids, num_gaussians, t_ptr, t_pair, t_row):
    """Pairs grouped by Gaussian (pixel order inside a group): a stable counting sort."""
    for p in range(ids.shape[0]):
        t_ptr[ids[p] + 1] += 1
    for g in range(num_gaussians):
        t_ptr[g + 1] += t_ptr[g]
    cursor = t_ptr[:-1].copy()
    for i in range(row_ptr.shape[0] - 1):
        for p in range(row_ptr[i], row_ptr[i + 1]):
            g = ids[p]
            t_pair[cursor[g]] = p
            t_row[cursor[g]] = i
            cursor[g] += 1


@njit(**OPTS)
def composite_fwd(row_ptr, ids, w, attr, out):
    """out[i] = sum over pixel i's pairs of w * attr[gaussian] (front to back)."""
    C = attr.shape[1]
    for i in prange(row_ptr.shape[0] - 1):
        for p in range(row_ptr[i], row_ptr[i + 1]):
            g = ids[p]
            wp = w[p]
            for c in range(C):
                out[i, c] += wp * attr[g, c]


@njit(cache=True, fastmath=False, inline="always")
def _dot(a, b, C, zero):
    """Dot product with 8 interleaved partial sums in a fixed order (vectorisable, exact order)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    C8 = C - C % 8
    for c in range(0, C8, 8):
        s0 += a[c] * b[c]
        s1 += a[c + 1] * b[c + 1]
        s2 += a[c + 2] * b[c + 2]
        s3 += a[c + 3] * b[c + 3]
        s4 += a[c + 4] * b[c + 4]
        s5 += a[c + 5] * b[c + 5]
        s6 += a[c + 6] * b[c + 6]
        s7 += a[c + 7] * b[c + 7]
    for c in range(C8, C):
        s0 += a[c] * b[c]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**OPTS)
def composite_bwd_weights(row_ptr, ids, attr, g_out, zero, g_w):
    """dL/dw of every pair: the pixel's upstream gradient dotted with the Gaussian's attributes.

    ``zero`` is a 0 of the attributes' dtype (keeps float32 sums in float32).
    """
    C = attr.shape[1]
    for i in prange(row_ptr.shape[0] - 1):
        gi = g_out[i]
        for p in range(row_ptr[i], row_ptr[i + 1]):
            g_w[p] = _dot(gi, attr[ids[p]], C, zero)


@njit(**OPTS)
def composite_bwd_attr(t_ptr, t_pair, t_row, w, g_out, g_attr):
    """dL/dattr[g] = sum over g's pairs (pixel order) of w * dL/dout[pixel]."""
    C = g_out.shape[1]
    for g in prange(t_ptr.shape[0] - 1):
        for q in range(t_ptr[g], t_ptr[g + 1]):
            wp = w[t_pair[q]]
            r = t_row[q]
            for c in range(C):
                g_attr[g, c] += wp * g_out[r, c]


@njit(**OPTS)
def weights_bwd_pairs(xs, ys, row_ptr, ids, w, m, con, op, k, g_w, gT_Tf, G):
    """Per pair, dL/d(mean x, mean y, conic a, b, c, opacity) into G [M, 6].

    Back to front over pixel i's pairs with S = gT T_final + sum_{later} gw w:
    dL/dalpha = gw T_before - S / (1 - alpha), T_before = w / alpha; then alpha = o e^-sigma
    (no gradient where clamped at 0.99) and the conic form sigma.
    """
    half, amax, one = k[0], k[1], k[4]
    for i in prange(xs.shape[0]):
        x, y = xs[i], ys[i]
        S = gT_Tf[i]
        for p in range(row_ptr[i + 1] - 1, row_ptr[i] - 1, -1):
            g = ids[p]
            dx = x - m[g, 0]
            dy = y - m[g, 1]
            sig = (dx * (half * con[g, 0])) * dx + (dy * (half * con[g, 2])) * dy + (
                dx * con[g, 1]) * dy
            e = math.exp(-sig)
            a_raw = op[g] * e
            a = a_raw if a_raw <= amax else amax
            gw = g_w[p]
            wp = w[p]
            g_a = gw * (wp / a) - S / (one - a)
            S += gw * wp
            if not a_raw <= amax:
                g_a = k[5]
            g_sig = -(g_a * a_raw)
            gdx = g_sig * dx
            gdy = g_sig * dy
            G[p, 0] = -(con[g, 0] * gdx + con[g, 1] * gdy)
            G[p, 1] = -(con[g, 1] * gdx + con[g, 2] * gdy)
            G[p, 2] = half * (gdx * dx)
            G[p, 3] = gdx * dy
            G[p, 4] = half * (gdy * dy)
            G[p, 5] = g_a * e


@njit(**OPTS)
def reduce_pairs(t_ptr, t_pair, G, out):
    """out[g] = sum of G over Gaussian g's pairs, in pixel order (deterministic)."""
    D = G.shape[1]
    for g in prange(t_ptr.shape[0] - 1):
        for q in range(t_ptr[g], t_ptr[g + 1]):
            p = t_pair[q]
            for d in range(D):
                out[g, d] += G[p, d]
