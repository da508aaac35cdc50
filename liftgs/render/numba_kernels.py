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
def _walk(i, xs, ys, tile, list_ptr, list_ids, m, con, op, lim, k, ids, w, out, cap):
    """Front-to-back blending of pixel i (gsplat rules); returns (pairs, T_final).

    ``lim[g]`` is slightly above ln(255 o): beyond it alpha < 1/255 for sure, so exp is
    skipped; entries near the threshold still take the exact test. The first ``cap`` pairs
    are written to ``ids`` / ``w`` from ``out`` on; the count goes on past ``cap``.
    """
    half, amax, amin, tmin, one = k[0], k[1], k[2], k[3], k[4]
    t = tile[i]
    x, y = xs[i], ys[i]
    T = one
    n = 0
    for j in range(list_ptr[t], list_ptr[t + 1]):
        g = list_ids[j]
        dx = x - m[g, 0]
        dy = y - m[g, 1]
        sig = (dx * (half * con[g, 0])) * dx + (dy * (half * con[g, 2])) * dy + (
            dx * con[g, 1]) * dy
        if not sig >= k[5] or sig > lim[g]:
            continue
        a = op[g] * math.exp(-sig)
        if a > amax:
            a = amax
        if not a >= amin:
            continue
        nT = T * (one - a)
        if nT <= tmin:
            break
        if n < cap:
            ids[out + n] = g
            w[out + n] = a * T
        n += 1
        T = nT
    return n, T


@njit(**OPTS)
def walk_capped(order, xs, ys, tile, list_ptr, list_ids, m, con, op, lim, k, cap, s_ids, s_w,
                counts, T_final):
    """Pass 1: row j (pixel order[j]): its count, its pixel's final T, and its first ``cap``
    pairs into the scratch rows ``s_ids`` / ``s_w`` [P * cap]."""
    for j in prange(order.shape[0]):
        i = order[j]
        n, T = _walk(i, xs, ys, tile, list_ptr, list_ids, m, con, op, lim, k, s_ids, s_w,
                     j * cap, cap)
        counts[j] = n
        T_final[i] = T


@njit(**OPTS)
def compact_rows(row_ptr, counts, cap, s_ids, s_w, ids, w):
    """Copy the scratch rows that fit (count <= cap) into the final pair list."""
    for j in prange(counts.shape[0]):
        n = counts[j]
        if n <= cap:
            o = row_ptr[j]
            for q in range(n):
                ids[o + q] = s_ids[j * cap + q]
                w[o + q] = s_w[j * cap + q]


@njit(**OPTS)
def write_pairs(order, xs, ys, tile, list_ptr, list_ids, m, con, op, lim, k, row_ptr, ids, w):
    """Pass 2 for the rows that overflowed: pairs (Gaussian id, alpha * T) front to back."""
    for j in prange(order.shape[0]):
        _walk(order[j], xs, ys, tile, list_ptr, list_ids, m, con, op, lim, k, ids, w,
              row_ptr[j], 1 << 62)


@njit(cache=True, fastmath=False)
def transpose_pairs(row_ptr, ids, order, num_gaussians, t_ptr, t_pair, t_pix):
    """Pairs grouped by Gaussian (row order inside a group): a stable counting sort.

    ``t_pix`` is the pixel (index into the rendered pixels) of each pair.
    """
    for p in range(ids.shape[0]):
        t_ptr[ids[p] + 1] += 1
    for g in range(num_gaussians):
        t_ptr[g + 1] += t_ptr[g]
    cursor = t_ptr[:-1].copy()
    for i in range(row_ptr.shape[0] - 1):
        for p in range(row_ptr[i], row_ptr[i + 1]):
            g = ids[p]
            t_pair[cursor[g]] = p
            t_pix[cursor[g]] = order[i]
            cursor[g] += 1


@njit(**OPTS)
def composite_fwd(row_ptr, ids, order, w, attr, out):
    """out[order[j]] = sum over row j's pairs of w * attr[gaussian] (front to back)."""
    C = attr.shape[1]
    for j in prange(row_ptr.shape[0] - 1):
        o = out[order[j]]
        for p in range(row_ptr[j], row_ptr[j + 1]):
            a = attr[ids[p]]
            wp = w[p]
            for c in range(C):
                o[c] += wp * a[c]


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
def composite_bwd_weights(row_ptr, ids, order, attr, g_out, g_w):
    """dL/dw of every pair: the pixel's upstream gradient dotted with the Gaussian's attributes."""
    C = attr.shape[1]
    Cp = 16
    while Cp < C:
        Cp *= 2
    for j in prange(row_ptr.shape[0] - 1):
        gi = g_out[order[j]]
        buf = np.zeros(Cp, g_out.dtype)
        for p in range(row_ptr[j], row_ptr[j + 1]):
            a = attr[ids[p]]
            if C <= 8:  # few channels: a plain left-to-right sum is cheaper than the tree
                acc = gi[0] * a[0]
                for c in range(1, C):
                    acc += gi[c] * a[c]
                g_w[p] = acc
            else:
                g_w[p] = _dot(gi, a, C, buf)


@njit(**OPTS)
def composite_bwd_attr(t_ptr, t_pair, t_pix, g_order, w, g_out, g_attr):
    """dL/dattr[g] = sum over g's pairs (row order) of w * dL/dout[pixel].

    Gaussians are visited in ``g_order`` (by first row) so that nearby ones share cache.
    """
    C = g_out.shape[1]
    for h in prange(g_order.shape[0]):
        g = g_order[h]
        ga = g_attr[g]
        for q in range(t_ptr[g], t_ptr[g + 1]):
            wp = w[t_pair[q]]
            go = g_out[t_pix[q]]
            for c in range(C):
                ga[c] += wp * go[c]


@njit(**OPTS)
def weights_bwd_pairs(order, xs, ys, row_ptr, ids, w, m, con, op, k, g_w, gT_Tf, G):
    """Per pair, dL/d(mean x, mean y, conic a, b, c, opacity) into G [M, 6].

    Back to front over pixel i's pairs with S = gT T_final + sum_{later} gw w:
    dL/dalpha = gw T_before - S / (1 - alpha), T_before = w / alpha; then alpha = o e^-sigma
    (no gradient where clamped at 0.99) and the conic form sigma.
    """
    half, amax, one = k[0], k[1], k[4]
    for j in prange(order.shape[0]):
        i = order[j]
        x, y = xs[i], ys[i]
        S = gT_Tf[i]
        for p in range(row_ptr[j + 1] - 1, row_ptr[j] - 1, -1):
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
def reduce_pairs(t_ptr, t_pair, g_order, G, out):
    """out[g] = sum of G over Gaussian g's pairs, in row order (deterministic)."""
    D = G.shape[1]
    for h in prange(g_order.shape[0]):
        g = g_order[h]
        for q in range(t_ptr[g], t_ptr[g + 1]):
            p = t_pair[q]
            for d in range(D):
                out[g, d] += G[p, d]
