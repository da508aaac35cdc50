"""Segment embeddings of other scenes: extra negatives for the contrastive feature loss.

Eq. 7 (paper Sec 3.2.2) contrasts each labelled pixel's rendered feature against the unique
segment embeddings of its own frame, about four on the synthetic rooms. Four alternatives
teach a field that tells a chair from a wall but not a red chair from a blue one, and
zero-shot grounding ranks a room's proposals by exactly that difference (docs/training.md).
The bank holds the segment embeddings of a few labelled frames per scene; a sample draws
``count`` rows from scenes other than its own, so they are true negatives up to a caption
that means the same thing, which :func:`liftgs.losses.feature_contrastive_loss` drops by
cosine similarity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm


class NegativeBank:
    """Embeddings [M, F] with the scene index of every row; draws rows of other scenes."""

    def __init__(self, embeddings: np.ndarray, scene_of: np.ndarray):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        scene_of = np.asarray(scene_of, dtype=np.int64)
        if embeddings.ndim != 2 or scene_of.shape != embeddings.shape[:1]:
            raise ValueError(f"NegativeBank needs embeddings [M, F] and scene_of [M], got "
                             f"{list(embeddings.shape)} and {list(scene_of.shape)}")
        self.embeddings = torch.from_numpy(embeddings)
        self.scene_of = scene_of
        self._order = np.argsort(scene_of, kind="stable")  # rows grouped by scene: the rows of
        # other scenes are the two slices around a scene's own
        self._bounds = np.searchsorted(scene_of[self._order], np.arange(int(scene_of.max(initial=-1)) + 2))

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @classmethod
    def from_store(cls, store, scenes, frames_per_scene: int = 8, progress: bool = False) -> NegativeBank:
        """``frames_per_scene`` evenly spaced labelled frames of each scene entry (``scene_id``
        and ``frames`` = [(index, label key)]) read from a :class:`PseudoLabelStore`."""
        if frames_per_scene < 1:
            raise ValueError(f"frames_per_scene must be >= 1, got {frames_per_scene}")
        rows, owner = [], []
        for si, entry in enumerate(tqdm(scenes, desc="feature negatives", unit="scene", disable=not progress)):
            n = len(entry.frames)
            picks = np.unique(np.linspace(0, n - 1, num=min(frames_per_scene, n)).round().astype(int))
            for i in picks:
                emb = np.asarray(store.get(entry.scene_id, entry.frames[i][1]).embeddings, dtype=np.float32)
                rows.append(emb)
                owner.append(np.full(emb.shape[0], si, dtype=np.int64))
        if not rows:
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
        return cls(np.concatenate(rows), np.concatenate(owner))

    def draw(self, rng: np.random.Generator, scene_index: int, count: int) -> Tensor:
        """``count`` rows (with replacement when the bank is smaller) not of ``scene_index``;
        [0, F] when the bank holds no other scene."""
        lo, hi = (self._bounds[scene_index], self._bounds[scene_index + 1]) \
            if 0 <= scene_index < len(self._bounds) - 1 else (0, 0)
        others = len(self) - (hi - lo)
        if count <= 0 or others <= 0:
            return self.embeddings[:0]
        k = rng.choice(others, size=count, replace=count > others)
        k = np.where(k >= lo, k + (hi - lo), k)  # skip the scene's own slice of the grouped rows
        return self.embeddings[torch.from_numpy(self._order[k])]
