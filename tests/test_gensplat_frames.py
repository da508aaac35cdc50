"""GAFS's geometric parts: pose distance, redundancy suppression, uniform sampling, per-view
visibility labels and view recall (liftgs.models.gensplat.frames)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftgs.geometry import look_at
from liftgs.models.gensplat.frames import (
    pairwise_view_distances,
    select_views,
    target_visibility,
    uniform_views,
    view_distance,
    view_hit,
    view_recall,
)


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def pose(R: np.ndarray, centre) -> np.ndarray:
    """World->camera viewmat of a camera with rotation R (world->camera) at ``centre``."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.asarray(centre, dtype=np.float64)
    return T


def test_identity_gives_zero():
    assert view_distance(np.eye(4), np.eye(4)) == 0.0
    V = look_at([1.0, 2.0, 1.5], [0.0, 0.0, 0.5])
    assert view_distance(V, V) == pytest.approx(0.0, abs=1e-7)


def test_pure_translation_is_centre_distance():
    a = pose(rot_z(30), [0.0, 0.0, 0.0])
    b = pose(rot_z(30), [3.0, 4.0, 0.0])
    # the viewmats' translation columns differ by R (c_b - c_a); the centres by (3, 4, 0)
    assert view_distance(a, b) == pytest.approx(5.0)
    assert view_distance(a, b, lambda_t=0.1) == pytest.approx(0.5)
    assert view_distance(a, b, lambda_r=7.0) == pytest.approx(5.0)


def test_pure_rotation_gives_angle():
    a = pose(np.eye(3), [1.0, 1.0, 1.0])
    assert view_distance(a, pose(rot_z(90), [1.0, 1.0, 1.0])) == pytest.approx(math.pi / 2)
    assert view_distance(a, pose(rot_z(180), [1.0, 1.0, 1.0])) == pytest.approx(math.pi)
    assert view_distance(a, pose(rot_z(90), [1.0, 1.0, 1.0]), lambda_r=0.5) == pytest.approx(math.pi / 4)
    # numerically safe near 0 and near pi: the angle is still resolved
    assert view_distance(a, pose(rot_z(1e-6), [1.0, 1.0, 1.0])) == pytest.approx(math.radians(1e-6), rel=1e-6)
    assert view_distance(a, pose(rot_z(180 - 1e-6), [1.0, 1.0, 1.0])) == pytest.approx(
        math.pi - math.radians(1e-6), abs=1e-12)
    # rotation plus translation add
    assert view_distance(a, pose(rot_z(90), [1.0, 1.0, 3.0])) == pytest.approx(2.0 + math.pi / 2)


def test_symmetry_and_pairwise_matrix():
    rng = np.random.default_rng(0)
    mats = np.stack([look_at(rng.uniform(-2, 2, 3) + [0, 0, 3], rng.uniform(-1, 1, 3)) for _ in range(6)])
    D = pairwise_view_distances(mats, lambda_t=1.0, lambda_r=2.0)
    assert D.shape == (6, 6)
    np.testing.assert_allclose(D, D.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(D), 0.0, atol=1e-7)
    for i in range(6):
        for j in range(6):
            assert D[i, j] == pytest.approx(float(view_distance(mats[i], mats[j], 1.0, 2.0)), abs=1e-12)
    # elementwise broadcasting, rectangular version, torch input
    np.testing.assert_allclose(view_distance(mats, mats[0], 1.0, 2.0), D[:, 0], atol=1e-12)
    np.testing.assert_allclose(pairwise_view_distances(mats[:2], mats, 1.0, 2.0), D[:2], atol=1e-12)
    np.testing.assert_allclose(pairwise_view_distances(torch.from_numpy(mats).float()), pairwise_view_distances(mats),
                               atol=1e-5)


def row_of_views(n: int, spacing: float) -> np.ndarray:
    """n cameras with the same orientation along the x axis, ``spacing`` apart."""
    return np.stack([pose(np.eye(3), [i * spacing, 0.0, 0.0]) for i in range(n)])


def test_suppression_keeps_a_near_duplicate_out():
    mats = np.stack([pose(np.eye(3), [0, 0, 0]), pose(np.eye(3), [0.1, 0, 0]),  # 1 duplicates 0
                     pose(np.eye(3), [2, 0, 0]), pose(rot_z(5), [2, 0, 0]),  # 3 duplicates 2 (5 deg)
                     pose(rot_z(90), [2, 0, 0])])  # 4: same place as 2, turned 90 deg: distinct
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    np.testing.assert_array_equal(select_views(scores, mats, k=3), [0, 2, 4])
    # the order follows the scores, not the indices
    np.testing.assert_array_equal(select_views(scores[::-1].copy(), mats, k=2), [4, 3])
    # tau_d = 0 keeps everything but exact duplicates
    np.testing.assert_array_equal(select_views(scores, mats, k=5, tau_d=0.0), [0, 1, 2, 3, 4])


def test_threshold_is_strict_and_weighted():
    mats = row_of_views(3, 0.5)  # neighbours exactly tau_d = 0.5 apart: not "exceeding"
    scores = np.array([3.0, 2.0, 1.0])
    np.testing.assert_array_equal(select_views(scores, mats, k=2), [0, 2])
    np.testing.assert_array_equal(select_views(scores, mats, k=2, lambda_t=2.0), [0, 1])


def test_fill_from_suppressed_in_score_order():
    mats = row_of_views(6, 0.1)  # all within 0.5 of view 0 except view 5 (0.5: not exceeding)
    scores = np.array([0.2, 0.9, 0.5, 0.7, 0.1, 0.3])
    # order 1, 3, 2, 5, 0, 4; kept: 1 (3 at 0.2, 2 at 0.1, 5 at 0.4, 0 at 0.1 suppressed; 4 at 0.3)
    np.testing.assert_array_equal(select_views(scores, mats, k=1), [1])
    np.testing.assert_array_equal(select_views(scores, mats, k=3), [1, 3, 2])
    np.testing.assert_array_equal(select_views(scores, mats, k=32), [1, 3, 2, 5, 0, 4])
    # far-apart views are all kept before any fill
    far = row_of_views(4, 1.0)
    np.testing.assert_array_equal(select_views(np.array([0.1, 0.4, 0.3, 0.2]), far, k=4), [1, 2, 3, 0])
    # ties: lower index first
    np.testing.assert_array_equal(select_views(np.zeros(4), far, k=2), [0, 1])
    # result is unique int64 of length min(k, V)
    out = select_views(torch.rand(6), mats, k=4)
    assert out.dtype == np.int64 and len(set(out.tolist())) == 4


def test_uniform_views():
    np.testing.assert_array_equal(uniform_views(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(uniform_views(100, 5), [0, 24, 49, 74, 99])
    np.testing.assert_array_equal(uniform_views(7, 1), [0])
    np.testing.assert_array_equal(uniform_views(5, 32), np.arange(5))
    np.testing.assert_array_equal(uniform_views(33, 32), np.arange(33)[np.arange(32) * 32 // 31])
    for n in (32, 33, 50, 1000, 4097):
        idx = uniform_views(n, 32)
        assert len(idx) == 32 and idx[0] == 0 and idx[-1] == n - 1 and (np.diff(idx) >= 1).all()
        np.testing.assert_array_equal(idx, uniform_views(n, 32))


def test_target_visibility_from_instance_maps_and_masks():
    maps = np.full((4, 8, 8), -1, dtype=np.int32)
    maps[0, :2, :2] = 5  # 4 pixels of 5
    maps[1, :4, :4] = 5  # 16 pixels of 5
    maps[2, :4, :4] = 7  # 16 pixels of 7
    maps[3, :, :] = 5  # all 64
    np.testing.assert_array_equal(target_visibility(maps, 5), [False, True, False, True])
    np.testing.assert_array_equal(target_visibility(maps, 5, min_pixels=1), [True, True, False, True])
    np.testing.assert_array_equal(target_visibility(maps, [5, 7], min_pixels=16), [False, True, True, True])
    np.testing.assert_array_equal(target_visibility(maps, 5, min_pixels=1, min_fraction=0.5),
                                  [False, False, False, True])
    # bool masks and soft rendered masks
    np.testing.assert_array_equal(target_visibility(maps == 5, min_pixels=4), [True, True, False, True])
    soft = (maps == 5).astype(np.float32) * 0.6
    np.testing.assert_array_equal(target_visibility(soft, min_pixels=4), [True, True, False, True])
    np.testing.assert_array_equal(target_visibility(soft, min_pixels=4, threshold=0.7), [False] * 4)
    np.testing.assert_array_equal(target_visibility(torch.from_numpy(soft), min_pixels=4), [True, True, False, True])


def test_view_recall_and_hit():
    visible = np.array([True, False, True, True, False, False])
    assert view_recall([0, 1], visible) == pytest.approx(1 / 3)
    assert view_recall([0, 2, 3, 4], visible) == pytest.approx(1.0)
    assert view_recall([1, 4, 5], visible) == 0.0
    assert view_recall([2, 2, 2], visible) == pytest.approx(1 / 3)  # repeats count once
    assert view_recall([], visible) == 0.0
    assert view_hit([1, 3], visible) == 1.0
    assert view_hit([1, 4, 5], visible) == 0.0
    assert view_hit(np.array([], dtype=np.int64), visible) == 0.0
    nowhere = np.zeros(6, dtype=bool)
    assert math.isnan(view_recall([0, 1], nowhere)) and math.isnan(view_hit([0], nowhere))
    # with a selector end to end
    mats = row_of_views(6, 1.0)
    sel = select_views(np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.4]), mats, k=2)
    assert view_recall(sel, visible) == pytest.approx(2 / 3) and view_hit(sel, visible) == 1.0


@pytest.mark.parametrize("call, match", [
    (lambda: view_distance(np.eye(3), np.eye(4)), r"viewmats_i must be .*\[3, 3\]"),
    (lambda: view_distance(np.eye(4), np.full((4, 4), np.nan)), "viewmats_j contains NaN"),
    (lambda: view_distance(np.eye(4) * 2, np.eye(4)), "must be rotations"),
    (lambda: view_distance(np.diag([1.0, 1.0, -1.0, 1.0]), np.eye(4)), "must be rotations"),
    (lambda: view_distance(np.eye(4), np.eye(4), lambda_t=-1), "lambda_t"),
    (lambda: view_distance(np.stack([np.eye(4)] * 2), np.stack([np.eye(4)] * 3)), "do not broadcast"),
    (lambda: pairwise_view_distances(np.eye(4)), r"viewmats must be \[V, 4, 4\]"),
    (lambda: select_views(np.zeros((2, 1)), row_of_views(2, 1.0)), r"scores must be \[V\], got shape \[2, 1\]"),
    (lambda: select_views(np.array([0.0, np.nan]), row_of_views(2, 1.0)), "scores contain NaN"),
    (lambda: select_views(np.zeros(3), row_of_views(2, 1.0)), r"V = 3 .* got shape \[2, 4, 4\]"),
    (lambda: select_views(np.zeros(2), row_of_views(2, 1.0), k=0), "k must be an integer >= 1"),
    (lambda: select_views(np.zeros(2), row_of_views(2, 1.0), tau_d=-0.1), "tau_d"),
    (lambda: uniform_views(0, 4), "num_views must be"),
    (lambda: uniform_views(4, 2.5), "k must be"),
    (lambda: target_visibility(np.zeros((8, 8), bool)), r"maps must be \[V, H, W\], got shape \[8, 8\]"),
    (lambda: target_visibility(np.zeros((2, 8, 8), np.float32), target_id=3), "integer instance maps"),
    (lambda: target_visibility(np.zeros((2, 8, 8), np.int32)), "need target_id"),
    (lambda: target_visibility(np.zeros((2, 8, 8), bool), min_pixels=0), "min_pixels"),
    (lambda: target_visibility(np.zeros((2, 8, 8), bool), min_fraction=2.0), "min_fraction"),
    (lambda: view_recall([0], np.array([1, 0])), "visible must be a bool"),
    (lambda: view_recall([0, 2], np.array([True, False])), r"outside \[0, 2\)"),
    (lambda: view_hit([0.5], np.array([True, False])), "selected must be"),
])
def test_bad_inputs_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
