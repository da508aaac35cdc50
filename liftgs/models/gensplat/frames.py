"""The geometric, non-learned parts of GenSplat's geometry-aware frame selector (GAFS).

GenSplat summary, Key Designs 3 ("GAFS Geometry-Aware Frame Selector"): a learned scorer gives
every view a relevance score s_i to the text (trained with BCE on per-view labels); "during
inference, after ranking by scores, redundancy suppression is applied to avoid visual overlap:
starting from the highest-scoring view, views are selected only if their distance (weighted
difference in translation and orientation) D_ij = λ_t ||t_i − t_j||_2 + λ_r · ang(R_i, R_j)
from already selected views exceeds a threshold τ_d (λ_t = λ_r = 1.0, τ_d = 0.5). Finally,
N* = 32 frames are selected." Its ablation replaces GAFS by uniform sampling (Table 4, V).

This module holds what needs no model:

* :func:`view_distance`, :func:`pairwise_view_distances`: D_ij between camera poses;
* :func:`select_views`: ranking + redundancy suppression (+ a fill rule the summary leaves open);
* :func:`uniform_views`: the uniform-sampling ablation;
* :func:`target_visibility`: which views show a target (the per-view labels the BCE trains on);
* :func:`view_recall`, :func:`view_hit`: how many of the views showing the target a selection keeps.

Poses are world->camera ``viewmat`` [4, 4] as in :class:`liftgs.types.Camera` (OpenCV axes),
``x_cam = R x_world + t``. In D_ij, "t_i" is read as the camera **centre** c_i = −R_iᵀ t_i (the
translation column of a world->camera matrix mixes in the rotation, so two cameras at one place
looking different ways would otherwise differ in "translation"); ang(R_i, R_j) is the rotation
angle of R_i R_jᵀ in radians, in [0, π]. With the defaults, 0.5 is half a scene unit (metres for
ScanNet) or about 28.6° of turn. Numpy in, numpy out; torch tensors are accepted as inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROTATION_ATOL = 1e-3  # how far R Rᵀ may be from I (float32 poses pass, a scaled matrix does not)


def _as_array(x: Any, dtype=None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_viewmats(name: str, viewmats: Any, batched: bool | None = None) -> np.ndarray:
    """``viewmats`` as float64 [..., 4, 4] (``batched`` True: [V, 4, 4]; False: [4, 4]), checked
    to hold finite rigid world->camera transforms."""
    v = _as_array(viewmats, np.float64)
    ok = v.ndim >= 2 and v.shape[-2:] == (4, 4)
    if batched is True:
        ok = ok and v.ndim == 3
    elif batched is False:
        ok = ok and v.ndim == 2
    if not ok:
        want = {True: "[V, 4, 4]", False: "[4, 4]", None: "[4, 4] or [..., 4, 4]"}[batched]
        raise ValueError(f"{name} must be {want} world->camera matrices, got shape {list(v.shape)}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    R = v[..., :3, :3]
    gram = np.einsum("...ij,...kj->...ik", R, R)
    if v.size and (np.abs(gram - np.eye(3)).max() > ROTATION_ATOL or (np.linalg.det(R) <= 0).any()):
        raise ValueError(f"{name}: the upper-left 3x3 blocks must be rotations (orthonormal, det +1)")
    return v


def _centres_and_rotations(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R = v[..., :3, :3]
    return -np.einsum("...ji,...j->...i", R, v[..., :3, 3]), R  # c = −Rᵀ t


def _distance(c_a, R_a, c_b, R_b, lambda_t: float, lambda_r: float) -> np.ndarray:
    """D between broadcastable centres [..., 3] / rotations [..., 3, 3]."""
    trans = np.linalg.norm(c_a - c_b, axis=-1)
    # M = R_a R_bᵀ: cos θ = (tr M − 1) / 2 and sin θ = ||vee(M − Mᵀ)|| / 2; atan2 of the two is
    # accurate at every angle, where arccos of the trace alone loses precision near 0 and π.
    M = np.einsum("...ij,...kj->...ik", R_a, R_b)
    cos = (np.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    sin = np.linalg.norm(skew, axis=-1) / 2.0
    angle = np.arctan2(sin, cos)
    return lambda_t * trans + lambda_r * angle


def _check_weights(lambda_t: float, lambda_r: float) -> None:
    for name, value in (("lambda_t", lambda_t), ("lambda_r", lambda_r)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def view_distance(viewmats_i: Any, viewmats_j: Any, lambda_t: float = 1.0, lambda_r: float = 1.0) -> np.ndarray:
    """D_ij = λ_t ||c_i − c_j||_2 + λ_r · ang(R_i, R_j) (GenSplat summary, Key Designs 3, GAFS).

    ``viewmats_i``, ``viewmats_j``: world->camera [4, 4] or [..., 4, 4], broadcast against each
    other (one pair, or pairs elementwise). c = −Rᵀ t is the camera centre, ang the rotation
    angle of R_i R_jᵀ in radians ([0, π]). Returns a float64 array of the broadcast shape (0-d
    for one pair). Symmetric, 0 for a pose and itself. :func:`pairwise_view_distances` gives the
    full matrix.
    """
    _check_weights(lambda_t, lambda_r)
    a = _check_viewmats("viewmats_i", viewmats_i)
    b = _check_viewmats("viewmats_j", viewmats_j)
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"viewmats_i {list(a.shape)} and viewmats_j {list(b.shape)} do not broadcast") from None
    c_a, R_a = _centres_and_rotations(a)
    c_b, R_b = _centres_and_rotations(b)
    return _distance(c_a, R_a, c_b, R_b, lambda_t, lambda_r)


def pairwise_view_distances(viewmats: Any, others: Any = None, lambda_t: float = 1.0,
                            lambda_r: float = 1.0) -> np.ndarray:
    """[A, B] matrix of D between every view of ``viewmats`` [A, 4, 4] and every view of
    ``others`` [B, 4, 4] (default: ``viewmats`` itself, a symmetric matrix with zero diagonal).
    D as in :func:`view_distance`."""
    _check_weights(lambda_t, lambda_r)
    a = _check_viewmats("viewmats", viewmats, batched=True)
    b = a if others is None else _check_viewmats("others", others, batched=True)
    c_a, R_a = _centres_and_rotations(a)
    c_b, R_b = _centres_and_rotations(b)
    return _distance(c_a[:, None], R_a[:, None], c_b[None], R_b[None], lambda_t, lambda_r)


def select_views(scores: Any, viewmats: Any, k: int = 32, tau_d: float = 0.5, lambda_t: float = 1.0,
                 lambda_r: float = 1.0) -> np.ndarray:
    """GAFS inference: indices [min(k, V)] int64 of the selected views, in selection order.

    ``scores`` [V]: relevance of each view (higher = better; any finite values, e.g. the
    scorer's cosines s_i); ``viewmats`` [V, 4, 4] world->camera. As in the GenSplat summary
    (Key Designs 3): views are visited by descending score (ties: lower index first) and a
    view is kept only if its distance D (:func:`view_distance`, weights ``lambda_t``,
    ``lambda_r``) to **every** view kept so far exceeds ``tau_d`` (strictly); the walk stops
    once ``k`` views are kept (N* = 32, τ_d = 0.5, λ_t = λ_r = 1 by default, the summary's).

    Fill rule (the summary does not say what happens when fewer than ``k`` views pass the
    suppression): the selection is completed with the best-scoring suppressed views, in score
    order, so that ``min(k, V)`` views are always returned; the suppression-passing views come
    first. With V <= k every view is returned (suppression then decides only the order).
    """
    s = _as_array(scores, np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be [V], got shape {list(s.shape)}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    v = _check_viewmats("viewmats", viewmats, batched=True)
    if v.shape[0] != s.shape[0]:
        raise ValueError(f"viewmats must be [V, 4, 4] with V = {s.shape[0]} (one per score), got shape {list(v.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not (np.isfinite(tau_d) and tau_d >= 0):
        raise ValueError(f"tau_d must be a finite number >= 0, got {tau_d}")
    _check_weights(lambda_t, lambda_r)

    n = s.shape[0]
    k = min(int(k), n)
    order = np.argsort(-s, kind="stable")
    centres, rotations = _centres_and_rotations(v)
    nearest = np.full(n, np.inf)  # each view's distance to the nearest kept view
    kept: list[int] = []
    suppressed: list[int] = []
    for idx in order:
        if len(kept) == k:
            break
        if nearest[idx] > tau_d:
            kept.append(int(idx))
            d = _distance(centres, rotations, centres[idx], rotations[idx], lambda_t, lambda_r)
            np.minimum(nearest, d, out=nearest)
        else:
            suppressed.append(int(idx))
    kept.extend(suppressed[: k - len(kept)])  # suppressed holds the visited views in score order
    return np.asarray(kept, dtype=np.int64)


def uniform_views(num_views: int, k: int) -> np.ndarray:
    """The uniform-sampling ablation (GenSplat summary, Table 4, V): ``min(k, num_views)``
    evenly spaced view indices, ascending, first and last view included:
    ``floor(i (num_views − 1) / (k − 1))`` for i = 0..k−1 (``np.linspace(0, num_views − 1, k)``
    floored, computed in integers so it is exact); ``[0]`` for k = 1; every view when
    k >= num_views."""
    for name, value in (("num_views", num_views), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    n, k = int(num_views), int(k)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    i = np.arange(k, dtype=np.int64)
    return i * (n - 1) // (k - 1)


def target_visibility(maps: Any, target_id: int | list[int] | None = None, min_pixels: int = 16,
                      min_fraction: float = 0.0, threshold: float = 0.5) -> np.ndarray:
    """Bool [V]: which views show the target, the per-view labels s^_i GAFS's BCE trains on
    (GenSplat summary, Key Designs 3: "Relevance scores s_i ... supervised by BCE").

    ``maps`` [V, H, W], one of:

    * instance maps (integers, -1 = none, as ``Frame.instance_ids``) with ``target_id`` the
      target's id (or a list of ids: a view counts the pixels of any of them, for
      multi-target expressions);
    * target masks without ``target_id``: bool, or float rendered target masks (e.g. the
      alpha of the target's Gaussians), where a pixel is the target's when ``> threshold``.

    A view shows the target when at least ``min_pixels`` of its pixels are the target's and
    they make at least ``min_fraction`` of its H x W pixels. The default 16 pixels is the
    stage-II minimum instance size (docs/gensplat.md); the summary gives no number.
    """
    m = _as_array(maps)
    if m.ndim != 3:
        raise ValueError(f"maps must be [V, H, W], got shape {list(m.shape)}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, (int, np.integer)) or min_pixels < 1:
        raise ValueError(f"min_pixels must be an integer >= 1, got {min_pixels!r}")
    if not (np.isfinite(min_fraction) and 0.0 <= min_fraction <= 1.0):
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if target_id is not None:
        if not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"maps must be integer instance maps when target_id is given, got {m.dtype}")
        ids = np.atleast_1d(np.asarray(target_id))
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"target_id must be an integer or a non-empty list of integers, got {target_id!r}")
        hit = np.isin(m, ids)
    elif m.dtype == bool:
        hit = m
    elif np.issubdtype(m.dtype, np.floating):
        if not np.isfinite(m).all():
            raise ValueError("maps contain NaN or infinite values")
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        hit = m > threshold
    else:
        raise ValueError(f"maps of dtype {m.dtype} need target_id (instance maps); masks must be bool or float")
    counts = hit.reshape(m.shape[0], -1).sum(1)
    pixels = m.shape[1] * m.shape[2]
    return (counts >= min_pixels) & (counts >= min_fraction * pixels)


def _check_selection(selected: Any, visible: Any) -> tuple[np.ndarray, np.ndarray]:
    vis = _as_array(visible)
    if vis.ndim != 1 or vis.dtype != bool:
        raise ValueError(f"visible must be a bool [V] array, got {vis.dtype} shape {list(vis.shape)}")
    sel = _as_array(selected)
    if sel.size == 0:
        sel = sel.astype(np.int64).reshape(0)
    if sel.ndim != 1 or not np.issubdtype(sel.dtype, np.integer):
        raise ValueError(f"selected must be [k] integer view indices, got {sel.dtype} shape {list(sel.shape)}")
    if sel.size and (sel.min() < 0 or sel.max() >= vis.shape[0]):
        raise ValueError(f"selected holds indices outside [0, {vis.shape[0]}) (V = len(visible))")
    return np.unique(sel), vis


def view_recall(selected: Any, visible: Any) -> float:
    """Fraction of the views that show the target which are among ``selected``:
    |selected ∩ visible| / |visible|, for ``selected`` [k] view indices (repeats count once)
    and ``visible`` bool [V] (:func:`target_visibility`). NaN when no view shows the target
    (undefined; average with ``np.nanmean``)."""
    sel, vis = _check_selection(selected, visible)
    total = int(vis.sum())
    if total == 0:
        return float("nan")
    return float(vis[sel].sum()) / total


def view_hit(selected: Any, visible: Any) -> float:
    """1.0 if any selected view shows the target, else 0.0 (the "at least one good frame"
    variant of :func:`view_recall`); NaN when no view shows the target."""
    sel, vis = _check_selection(selected, visible)
    if not vis.any():
        return float("nan")
    return float(vis[sel].any())
