"""A tiny deterministic stand-in text encoder for tests and smoke runs (no model, no meaning).

Each whitespace-separated word maps to a fixed pseudo-random unit vector seeded by a hash of
the lower-cased word; the pooled vector is the normalised mean. Same words -> same vectors, so
identical captions collide exactly and different ones almost never do — enough to test
plumbing without loading a network. Never use it for training you care about.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch
import torch.nn.functional as F

from liftgs.text.base import CachedEncoder


class HashingTextEncoder(CachedEncoder):
    def __init__(self, dim: int = 32, batch_size: int = 64, cache_size: int = 20000) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.name = f"hash-{dim}"

    def _word(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.blake2b(word.lower().encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return F.normalize(torch.from_numpy(v), dim=0)

    def _encode_uncached(self, texts: list[str]):
        out = []
        for text in texts:
            spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
            if spans:
                tokens = torch.stack([self._word(text[a:b]) for a, b in spans])
                pooled = F.normalize(tokens.mean(0), dim=0)
            else:
                tokens, pooled = torch.zeros(0, self.dim), torch.zeros(self.dim)
            out.append((tokens, spans, pooled))
        return out
