"""Deterministic sample order: a pure function of (seed, position in the sample stream).

Exact resume (a killed and resumed run ends with the same weights as an uninterrupted one)
needs the data a step sees to depend only on the seed and the step, never on how many steps
this process has run. The stream of samples is an endless sequence of epochs, each a fresh
permutation of the items seeded by (seed, epoch); every random choice inside a sample (which
view, which segments, which pixels) uses a generator seeded by (seed, position). Distributed
ranks consume disjoint positions (``distributed.shard_positions``), so W ranks with batch B see
exactly the samples of one process with batch W*B.
"""

from __future__ import annotations

import numpy as np

_PERM_SALT = 0x5EED_0D0E  # separates the permutation streams from per-sample streams
_SAMPLE_SALT = 0x5A3_B1E


class EpochSampler:
    """Maps a global sample position to an item index, epoch by epoch."""

    def __init__(self, num_items: int, seed: int, shuffle: bool = True):
        if num_items <= 0:
            raise ValueError("EpochSampler needs at least one item; is the training set empty?")
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:  # [num_items] int64
        if epoch not in self._cache:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, _PERM_SALT, int(epoch)])
                perm = rng.permutation(self.num_items)
            else:
                perm = np.arange(self.num_items)
            self._cache = {epoch: perm}  # keep one epoch: memory stays O(num_items)
        return self._cache[epoch]

    def item(self, position: int) -> int:
        epoch, offset = divmod(int(position), self.num_items)
        return int(self.permutation(epoch)[offset])

    def epoch_of(self, position: int) -> int:
        return int(position) // self.num_items


def sample_rng(seed: int, position: int) -> np.random.Generator:
    """The generator for every random choice made while building sample ``position``."""
    return np.random.default_rng([int(seed), _SAMPLE_SALT, int(position)])


def subsample_indices(num_items: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A deterministic ``fraction`` of ``range(num_items)``, nested across fractions.

    The items are ranked once by a seeded permutation and the first ``ceil(fraction * n)``
    are kept, so the 10 % subset is inside the 25 % subset, etc. — what a data-scaling curve
    (paper Fig. 7) needs to be monotone in data rather than in luck.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}")
    order = np.random.default_rng([int(seed), _PERM_SALT, 7]).permutation(num_items)
    keep = max(1, int(np.ceil(fraction * num_items - 1e-9)))
    return np.sort(order[:keep])
