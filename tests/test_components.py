"""Connected-component clean-up of predicted masks: grid rule vs brute force, keep-main rules."""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.modules.components import components_reference, keep_main_component, point_components


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("radius", [0.05, 0.1, 0.3])
def test_components_match_brute_force(radius):
    rng = np.random.default_rng(int(radius * 100))
    blobs = [rng.normal(c, 0.06, size=(60, 3)) for c in ((0, 0, 0), (1, 0, 0), (0.25, 0.1, 0), (3, 2, -1))]
    pts = np.concatenate(blobs + [rng.uniform(-2, 4, size=(80, 3))])
    fast, ref = point_components(pts, radius), components_reference(pts, radius)
    assert fast.shape == (pts.shape[0],) and _same_partition(fast, ref)


def test_keep_main_component_prefers_mass_and_handles_edges():
    pts = np.array([[0, 0, 0], [0.05, 0, 0], [0.1, 0, 0], [2, 2, 2], [2.05, 2, 2]], dtype=np.float32)
    mask = np.ones(5, bool)
    assert keep_main_component(pts, mask, radius=0.1).tolist() == [1, 1, 1, 0, 0]  # most points
    w = np.array([0.1, 0.1, 0.1, 0.9, 0.9])
    assert keep_main_component(pts, mask, w, radius=0.1).tolist() == [0, 0, 0, 1, 1]  # most probability
    empty = np.zeros(5, bool)
    assert not keep_main_component(pts, empty).any()
    assert point_components(np.zeros((0, 3)), 0.1).shape == (0,)
    with pytest.raises(ValueError, match="radius"):
        point_components(pts, 0.0)
    with pytest.raises(ValueError, match="mask has 4 values"):
        keep_main_component(pts, mask[:4])
