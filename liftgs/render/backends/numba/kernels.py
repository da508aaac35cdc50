"""Compiled CPU kernels (numba) for the sparse weights, forward and backward.

Work is split by screen tile: a tile's rows (rendered pixels) share one depth-sorted list of
candidate Gaussians, and the list entries that are blended at least once become the tile's
*columns* (``col_ptr[t] : col_ptr[t + 1]``, Gaussian ``col_gid``). Every pair stores its
column, so gradients per Gaussian are first summed per column inside the tile that owns it
(one thread per tile, rows in order) and then over each Gaussian's columns in tile order.
No two threads write one value and every sum has a fixed order, so results are bitwise
identical for any thread count. Compositing and its backward live in ``numba_composite``.
Arithmetic stays in the input dtype: constants arrive as a small array ``k`` =
[0.5, ALPHA_MAX, ALPHA_MIN, T_MIN, 1.0, 0.0] of that dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OPTS = dict(cache=True, parallel=True, fastmath=False, nogil=True)


@njit(**OPTS)
def pack_records(list_ids, m, con, op, lim, k, rec):
    """rec[e] = (mean x, mean y, a/2, b, c/2, sigma limit, opacity) of list entry e.

    One contiguous record per entry: a tile's walk streams through memory instead of
    gathering five arrays per candidate. ``0.5 * a`` is the same rounding as the reference.
    """
    half = k[0]
    for e in prange(list_ids.shape[0]):
        g = list_ids[e]
        rec[e, 0] = m[g, 0]
        rec[e, 1] = m[g, 1]
        rec[e, 2] = half * con[g, 0]
        rec[e, 3] = con[g, 1]
        rec[e, 4] = half * con[g, 2]
        rec[e, 5] = lim[g]
        rec[e, 6] = op[g]


@njit(cache=True, fastmath=False, inline="always")
def _walk(x, y, e0, e1, rec, k, ent, w, ar, out, cap, used):
    """Front-to-back blending of one pixel over entries e0:e1 (gsplat rules): (pairs, T).

    ``rec[e, 5]`` is slightly above ln(255 o): beyond it alpha < 1/255 for sure, so exp is
    skipped; entries near the threshold still take the exact test. The first ``cap`` pairs
    (entry, alpha * T, unclamped alpha) go to ``ent`` / ``w`` / ``ar`` from ``out`` on; the
    count goes on past ``cap``.
    """
    amax, amin, tmin, one = k[1], k[2], k[3], k[4]
    T = one
    n = 0
    for e in range(e0, e1):
        dx = x - rec[e, 0]
        dy = y - rec[e, 1]
        sig = (dx * rec[e, 2]) * dx + (dy * rec[e, 4]) * dy + (dx * rec[e, 3]) * dy
        if not sig >= k[5] or sig > rec[e, 5]:
            continue
        a_raw = rec[e, 6] * math.exp(-sig)
        a = a_raw if a_raw <= amax else amax
        if not a >= amin:
            continue
        nT = T * (one - a)
        if nT <= tmin:
            break
        if n < cap:
            ent[out + n] = e
            w[out + n] = a * T
            ar[out + n] = a_raw
        used[e] = 1
        n += 1
        T = nT
    return n, T


@njit(**OPTS)
def walk_tiles(tile_ptr, order, xs, ys, list_ptr, rec, k, cap, s_ent, s_w, s_a, counts,
               T_final, used):
    """Pass 1, one thread per tile: each row's count, final T, first ``cap`` pairs (scratch
    row r at ``r * cap``) and the list entries it blends (``used``)."""
    for t in prange(tile_ptr.shape[0] - 1):
        e0, e1 = list_ptr[t], list_ptr[t + 1]
        for r in range(tile_ptr[t], tile_ptr[t + 1]):
            i = order[r]
            n, T = _walk(xs[i], ys[i], e0, e1, rec, k, s_ent, s_w, s_a, r * cap, cap, used)
            counts[r] = n
            T_final[i] = T


@njit(**OPTS)
def compact_rows(row_ptr, counts, cap, s_ent, s_w, s_a, col_of_ent, col, w, ar):
    """Copy the scratch rows that fit (count <= cap) into the pair list, entries -> columns."""
    for r in prange(counts.shape[0]):
        n = counts[r]
        if n <= cap:
            o = row_ptr[r]
            for q in range(n):
                col[o + q] = col_of_ent[s_ent[r * cap + q]]
                w[o + q] = s_w[r * cap + q]
                ar[o + q] = s_a[r * cap + q]


@njit(**OPTS)
def rewalk_rows(rows, tile_of_row, order, xs, ys, list_ptr, rec, k, row_ptr, col_of_ent,
                used, col, w, ar):
    """Pass 2 for the rows that overflowed the scratch: walk again, writing in place
    (entries first, then mapped to columns; ``used`` is already complete)."""
    for q in prange(rows.shape[0]):
        r = rows[q]
        t = tile_of_row[q]
        i = order[r]
        o = row_ptr[r]
        n, _ = _walk(xs[i], ys[i], list_ptr[t], list_ptr[t + 1], rec, k, col, w, ar, o,
                     1 << 62, used)
        for p in range(o, o + n):
            col[p] = col_of_ent[col[p]]


@njit(cache=True, fastmath=False)
def group_columns(col_gid, num_gaussians, g_ptr, g_cols):
    """Columns grouped by Gaussian (ascending = tile order inside a group): counting sort."""
    for c in range(col_gid.shape[0]):
        g_ptr[col_gid[c] + 1] += 1
    for g in range(num_gaussians):
        g_ptr[g + 1] += g_ptr[g]
    cursor = g_ptr[:-1].copy()
    for c in range(col_gid.shape[0]):
        g = col_gid[c]
        g_cols[cursor[g]] = c
        cursor[g] += 1


@njit(cache=True, fastmath=False)
def pairs_by_gaussian(row_ptr, col, col_gid, num_gaussians, g_ptr, g_rows, g_pairs):
    """The pairs grouped by Gaussian (counting sort, pair order inside a group): Gaussian g
    owns ``g_pairs[g_ptr[g] : g_ptr[g + 1]]``, and ``g_rows`` holds each one's row."""
    for p in range(col.shape[0]):
        g_ptr[col_gid[col[p]] + 1] += 1
    for g in range(num_gaussians):
        g_ptr[g + 1] += g_ptr[g]
    cursor = g_ptr[:-1].copy()
    for r in range(row_ptr.shape[0] - 1):
        for p in range(row_ptr[r], row_ptr[r + 1]):
            g = col_gid[col[p]]
            g_rows[cursor[g]] = r
            g_pairs[cursor[g]] = p
            cursor[g] += 1


@njit(**OPTS)
def reduce_columns(g_ptr, g_cols, part, out):
    """out[g] = sum of part over Gaussian g's columns, in tile order (deterministic)."""
    D = part.shape[1]
    for g in prange(g_ptr.shape[0] - 1):
        for q in range(g_ptr[g], g_ptr[g + 1]):
            c = g_cols[q]
            for d in range(D):
                out[g, d] += part[c, d]


@njit(**OPTS)
def column_records(col_gid, m, con, crec):
    """crec[c] = (mean x, mean y, conic a, b, c) of column c's Gaussian (contiguous reads)."""
    for c in prange(col_gid.shape[0]):
        g = col_gid[c]
        crec[c, 0] = m[g, 0]
        crec[c, 1] = m[g, 1]
        crec[c, 2] = con[g, 0]
        crec[c, 3] = con[g, 1]
        crec[c, 4] = con[g, 2]


@njit(**OPTS)
def weights_bwd_tiles(tile_ptr, order, xs, ys, row_ptr, col, crec, w, ar, k, g_w, gT_Tf,
                      part):
    """Per column, sums of dL/d(mean x, mean y, conic a, b, c) and of dL/dalpha * alpha
    into part [U, 6] (the caller divides the last by the opacity: dL/do).

    Back to front over each row's pairs with S = gT T_final + sum_{later} gw w:
    dL/dalpha = gw T_before - S / (1 - alpha), T_before = w / alpha; then alpha = o e^-sigma
    (no gradient where clamped at 0.99; the forward kept the unclamped alpha ``ar``, so no
    exp here) and the conic form sigma. One thread per tile, rows in order, so each
    column's sum has a fixed order.
    """
    half, amax, one = k[0], k[1], k[4]
    for t in prange(tile_ptr.shape[0] - 1):
        for r in range(tile_ptr[t], tile_ptr[t + 1]):
            i = order[r]
            x, y = xs[i], ys[i]
            S = gT_Tf[i]
            for p in range(row_ptr[r + 1] - 1, row_ptr[r] - 1, -1):
                c = col[p]
                dx = x - crec[c, 0]
                dy = y - crec[c, 1]
                a_raw = ar[p]
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
                part[c, 0] += -(crec[c, 2] * gdx + crec[c, 3] * gdy)
                part[c, 1] += -(crec[c, 3] * gdx + crec[c, 4] * gdy)
                part[c, 2] += half * (gdx * dx)
                part[c, 3] += gdx * dy
                part[c, 4] += half * (gdy * dy)
                part[c, 5] -= g_sig


@njit(cache=True, fastmath=False, inline="always")
def _misses_rect(u, v, a, b, c, r2, lox, loy, hix, hiy):
    """True where d^T conic d > r2 on the whole rectangle (binning.py's test, in float64)."""
    dlx, dly, dhx, dhy = lox - u, loy - v, hix - u, hiy - v
    if dlx <= 0 and dhx >= 0 and dly <= 0 and dhy >= 0:
        return False
    best = np.inf
    for dx in (dlx, dhx):
        dy = min(max(-b * dx / c, dly), dhy)
        best = min(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    for dy in (dly, dhy):
        dx = min(max(-b * dy / a, dlx), dhx)
        best = min(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    return best > r2 * (1 + 1e-5) + 1e-5


@njit(cache=True, fastmath=False)
def bin_tiles(gid, x0, x1, y0, y1, uv, conic, r2, tile_size, width, height, tiles_x,
              occupied):
    """Tile lists (list_ptr [T + 1], list_ids [I]) from Gaussians already in depth order.

    Each Gaussian q visits the tiles of its pixel box (x0..x1, y0..y1), keeps those that are
    occupied and that its alpha >= 1/255 ellipse reaches, and a counting sort by tile keeps
    depth order inside a tile — the same lists as ``binning.tile_lists``.
    """
    Q = gid.shape[0]
    n_tiles = occupied.shape[0]
    box_ptr = np.zeros(Q + 1, np.int64)
    for q in range(Q):
        nx = x1[q] // tile_size - x0[q] // tile_size + 1
        ny = y1[q] // tile_size - y0[q] // tile_size + 1
        box_ptr[q + 1] = box_ptr[q] + nx * ny
    hit = np.empty(box_ptr[Q], np.int64)  # tile id, or -1 when dropped
    counts = np.zeros(n_tiles + 1, np.int64)
    for q in range(Q):
        o = box_ptr[q]
        u, v = np.float64(uv[q, 0]), np.float64(uv[q, 1])
        a, b, c = np.float64(conic[q, 0]), np.float64(conic[q, 1]), np.float64(conic[q, 2])
        for ty in range(y0[q] // tile_size, y1[q] // tile_size + 1):
            for tx in range(x0[q] // tile_size, x1[q] // tile_size + 1):
                t = ty * tiles_x + tx
                keep = occupied[t]
                if keep:
                    lox = np.float64(tx * tile_size) + 0.5
                    loy = np.float64(ty * tile_size) + 0.5
                    hix = min(lox + (tile_size - 1), width - 0.5)
                    hiy = min(loy + (tile_size - 1), height - 0.5)
                    keep = not _misses_rect(u, v, a, b, c, np.float64(r2[q]), lox, loy, hix,
                                            hiy)
                hit[o] = t if keep else -1
                if keep:
                    counts[t + 1] += 1
                o += 1
    for t in range(n_tiles):
        counts[t + 1] += counts[t]
    list_ids = np.empty(counts[n_tiles], np.int64)
    cursor = counts[:-1].copy()
    for q in range(Q):
        for o in range(box_ptr[q], box_ptr[q + 1]):
            t = hit[o]
            if t >= 0:
                list_ids[cursor[t]] = gid[q]
                cursor[t] += 1
    return counts, list_ids
