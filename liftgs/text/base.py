"""The text-encoder contract and the phrase cache every implementation shares.

Queries reach the grounding decoder as per-token vectors (paper Sec 3.2, ``Q`` of eq. 1) and
pseudo-label captions as one pooled vector per segment (appendix A.4), so an encoder returns
both, plus each token's character span so that expression spans (``Expression.spans``) can be
turned into token positive maps.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class TextEncoding:
    """Encodings of a batch of ``B`` strings.

    ``tokens[i]`` [T_i, F] holds the vectors of the i-th string's real tokens (special tokens
    such as [CLS]/[SEP] or <bos>/<eos> are left out); ``spans[i][t]`` is token t's character
    span ``(start, end)`` in the string; ``pooled`` [B, F] holds one L2-normalised vector per
    string.
    """

    tokens: list[Tensor]  # B x [T_i, F]
    spans: list[list[tuple[int, int]]]
    pooled: Tensor  # [B, F]

    def __len__(self) -> int:
        return len(self.tokens)


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that turns strings into :class:`TextEncoding` of dimension ``dim``."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> TextEncoding: ...


def tokens_in_span(spans: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens overlapping the character span ``[start, end)``.

    This is how an ``Expression`` span becomes a positive token map (paper Sec 3.3.3).
    """
    return [t for t, (a, b) in enumerate(spans) if a < end and b > start]


class CachedEncoder:
    """Shared batching + LRU phrase cache; subclasses implement :meth:`_encode_uncached`.

    Pseudo-labelling a room repeats the same few captions in every frame and training repeats
    the same expressions every epoch, so each distinct string is encoded once.
    """

    name: str = "text-encoder"
    dim: int = 0

    def __init__(self, batch_size: int = 64, cache_size: int = 20000) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0 (0 disables the cache), got {cache_size}")
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Tensor, list[tuple[int, int]], Tensor]] = OrderedDict()
        self.num_encoded = 0  # strings actually run through the network (cache misses)

    def _encode_uncached(self, texts: list[str]) -> list[tuple[Tensor, list[tuple[int, int]], Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextEncoding:
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings; wrap a single string in a list")
        results: dict[str, tuple[Tensor, list[tuple[int, int]], Tensor]] = {}
        missing: list[str] = []
        for text in texts:
            if text in results:
                continue
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                results[text] = hit
            else:
                results[text] = None  # type: ignore[assignment]
                missing.append(text)
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i:i + self.batch_size]
            for text, item in zip(chunk, self._encode_uncached(chunk)):
                results[text] = item
                self._remember(text, item)
            self.num_encoded += len(chunk)
        items = [results[t] for t in texts]
        pooled = torch.stack([it[2] for it in items]) if items else torch.zeros(0, self.dim)
        # clones: callers may modify their copy without corrupting the cache
        return TextEncoding(tokens=[it[0].clone() for it in items], spans=[list(it[1]) for it in items], pooled=pooled)

    def _remember(self, text: str, item: tuple[Tensor, list[tuple[int, int]], Tensor]) -> None:
        if self.cache_size == 0:
            return
        self._cache[text] = item
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()
