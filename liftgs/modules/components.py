"""Spatial clean-up of predicted 3D masks: keep one connected piece per proposal.

A proposal of the decoder stands for one object, but a thresholded mask ``sigmoid(M) > 0.5``
also picks up scattered points elsewhere in the room that happen to look alike (same colour,
similar shape). Boxes taken from the min / max of a mask's points (the referential-grounding
protocol, ScanRefer) are ruined by a single far outlier, so the open-vocabulary 3D literature
splits masks into spatially connected pieces before scoring (e.g. OpenMask3D and Open3DIS use
DBSCAN). Here the masked points are put on a grid of ``radius`` cells; two cells are connected
when they touch (26-neighbourhood), and the piece holding the most probability mass is kept.

The grid rule is exact and simple to state: points whose cells differ by at most one in every
axis are neighbours. :func:`components_reference` implements it by brute force for the tests.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["point_components", "components_reference", "keep_main_component"]

# the 13 "forward" neighbour offsets of the 26-neighbourhood (each edge found once)
_OFFSETS = np.array([d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)], dtype=np.int64)


def _cells(points: np.ndarray, radius: float) -> np.ndarray:
    if not radius > 0:
        raise ValueError(f"component radius must be > 0 metres, got {radius}")
    return np.floor(np.asarray(points, dtype=np.float64) / radius).astype(np.int64)  # [P, 3]


def point_components(points: np.ndarray, radius: float) -> np.ndarray:
    """Component label [P] (0..C-1) of every point; points in touching ``radius`` cells share one."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {list(points.shape)}")
    if points.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    cells = _cells(points, radius)
    uniq, inverse = np.unique(cells, axis=0, return_inverse=True)  # [U, 3] sorted, [P]
    inverse = inverse.reshape(-1)
    lo = uniq.min(0) - 1
    span = uniq.max(0) - lo + 2  # room for the +-1 neighbours
    stride = np.array([span[1] * span[2], span[2], 1])
    key = ((uniq - lo) * stride).sum(1)  # increasing: uniq is sorted
    rows, cols = [], []
    for d in _OFFSETS:
        nkey = key + int((d * stride).sum())
        pos = np.searchsorted(key, nkey)
        pos = np.minimum(pos, key.shape[0] - 1)
        hit = key[pos] == nkey
        rows.append(np.flatnonzero(hit))
        cols.append(pos[hit])
    r, c = np.concatenate(rows), np.concatenate(cols)
    U = uniq.shape[0]
    graph = coo_matrix((np.ones(r.shape[0], dtype=np.int8), (r, c)), shape=(U, U))
    _, cell_label = connected_components(graph, directed=False)
    return cell_label[inverse].astype(np.int64)


def components_reference(points: np.ndarray, radius: float) -> np.ndarray:
    """Brute force: union every pair of points whose cells are within one step on every axis."""
    cells = _cells(points, radius)
    n = cells.shape[0]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if np.abs(cells[i] - cells[j]).max() <= 1:
                parent[root(i)] = root(j)
    roots = [root(i) for i in range(n)]
    _, labels = np.unique(roots, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


def keep_main_component(points: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None,
                        radius: float = 0.1) -> np.ndarray:
    """``mask`` [P] bool reduced to its connected piece with the largest total ``weights``
    (the mask probabilities; point count when None). Ties go to the lowest component label."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.shape[0] != np.asarray(points).shape[0]:
        raise ValueError(f"mask has {mask.shape[0]} values but there are {np.asarray(points).shape[0]} points")
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return mask.copy()
    labels = point_components(np.asarray(points)[idx], radius)
    w = np.ones(idx.size) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)[idx]
    mass = np.bincount(labels, weights=w)
    out = np.zeros_like(mask)
    out[idx[labels == int(np.argmax(mass))]] = True
    return out
