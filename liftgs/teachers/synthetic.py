"""The synthetic teacher: pseudo-labels from rendered instance ids and object attributes.

It stands in for SAM + a captioner (paper Sec 3.4, appendix A.4) on the synthetic benchmark.
With every knob at 0 its labels are perfect; each knob adds one kind of error real 2D models
make (missed small objects, merged neighbours, over-segmented large surfaces, loose edges,
missing, wrong or reworded attributes). It sees one frame at a time: segment indices are
local to the frame and shuffled, never the scene's instance ids. All randomness is drawn from
streams seeded by (seed, scene, frame content, knob), so results do not depend on the order
frames are labelled in, and turning one knob on never changes what another knob does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from liftgs.config import to_dict
from liftgs.teachers import wording
from liftgs.teachers.base import compact_segments
from liftgs.text.base import TextEncoder
from liftgs.types import Frame, ObjectInfo, PseudoLabels, Scene

__all__ = ["SyntheticNoise", "SyntheticTeacher"]

_PROBS = ("drop_attribute", "swap_attribute", "synonym", "paraphrase", "merge", "split", "edge", "drop_small")
# One random stream per knob (index into this tuple) so knobs never disturb each other.
_STREAMS = ("shuffle",) + _PROBS


@dataclass
class SyntheticNoise:
    """Probabilities (0 = off) of each imperfection of the synthetic teacher."""

    drop_attribute: float = 0.0  # per attribute: left out of the caption
    swap_attribute: float = 0.0  # per attribute: replaced by a wrong value (another colour, size, ...)
    synonym: float = 0.0  # per word (attribute or category): replaced by a synonym
    paraphrase: float = 0.0  # per caption: reworded with another template
    merge: float = 0.0  # per pair of touching segments: merged (caption of the larger one)
    split: float = 0.0  # per large segment: cut in two across its longer side (same caption)
    split_min_fraction: float = 0.05  # "large" = at least this fraction of the image
    edge: float = 0.0  # per segment: boundary eroded or dilated by edge_px
    edge_px: int = 2
    drop_small: float = 0.0  # per small segment: missed entirely
    small_fraction: float = 0.01  # "small" = less than this fraction of the image
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _PROBS:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"SyntheticNoise.{name} is a probability; got {p}, use a value in [0, 1]")
        for name in ("split_min_fraction", "small_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticNoise.{name} is a fraction of the image; use a value in [0, 1]")
        if self.edge_px < 1:
            raise ValueError(f"SyntheticNoise.edge_px must be >= 1 pixel, got {self.edge_px}")

    @classmethod
    def realistic(cls, seed: int = 0) -> "SyntheticNoise":
        """A moderate mix of every error, roughly what SAM + a small VLM make on indoor images."""
        return cls(drop_attribute=0.2, swap_attribute=0.05, synonym=0.3, paraphrase=0.3, merge=0.05,
                   split=0.2, edge=0.3, drop_small=0.3, seed=seed)


def _frame_key(scene_id: str, frame: Frame) -> int:
    """A seed for this frame from its content (names may be empty or reused)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(scene_id.encode())
    h.update(np.ascontiguousarray(frame.camera.viewmat).tobytes())
    h.update(np.ascontiguousarray(frame.instance_ids).tobytes())
    return int.from_bytes(h.digest(), "little")


class _Streams(dict):
    """One generator per knob, seeded by (seed, frame, knob, extra...), created on first use."""

    def __init__(self, seed: int, key: int, extra: tuple[int, ...]) -> None:
        super().__init__()
        self._entropy = (seed, key)
        self._extra = extra

    def __missing__(self, name: str) -> np.random.Generator:
        gen = np.random.default_rng([*self._entropy, _STREAMS.index(name), *self._extra])
        self[name] = gen
        return gen


def _rngs(noise: SyntheticNoise, key: int, *extra: int) -> dict[str, np.random.Generator]:
    return _Streams(noise.seed, key, extra)


def _caption(info: ObjectInfo, noise: SyntheticNoise, rngs: dict[str, np.random.Generator],
             others: dict[str, list[str]]) -> str:
    """The caption of one object as this frame's imperfect captioner writes it."""
    changed = False
    words: list[str] = []
    clean = info.attributes.get("caption")
    attrs = wording.describable(info.attributes)
    if isinstance(clean, str) and clean:  # only what the clean caption mentions ("a red shelf": no size)
        attrs = [(k, v) for k, v in attrs if v.lower() in clean.lower().split()]
    for key, value in attrs:
        if noise.drop_attribute and rngs["drop_attribute"].random() < noise.drop_attribute:
            changed = True
            continue
        if noise.swap_attribute and rngs["swap_attribute"].random() < noise.swap_attribute:
            new = wording.wrong_value(key, value, others.get(key, []), rngs["swap_attribute"])
            changed |= new != value
            value = new
        words.append(value)
    noun = info.category
    if noise.synonym:
        out = []
        for w in words + [noun]:
            new = wording.synonym(w, rngs["synonym"]) if rngs["synonym"].random() < noise.synonym else w
            changed |= new != w
            out.append(new)
        words, noun = out[:-1], out[-1]
    if noise.paraphrase and rngs["paraphrase"].random() < noise.paraphrase:
        return wording.paraphrase(words, noun, rngs["paraphrase"])
    if not changed and isinstance(clean, str) and clean:
        return clean
    return wording.compose(words, noun)


def _drop_small(seg: np.ndarray, noise: SyntheticNoise, rng: np.random.Generator) -> np.ndarray:
    K = int(seg.max(initial=-1)) + 1
    area = np.bincount(seg[seg >= 0], minlength=K)
    small = np.nonzero((area > 0) & (area < noise.small_fraction * seg.size))[0]
    drop = small[rng.random(small.size) < noise.drop_small]
    if drop.size:
        seg = np.where(np.isin(seg, drop), -1, seg).astype(np.int32)
    return seg


def _merge(seg: np.ndarray, owner: np.ndarray, noise: SyntheticNoise, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Merge touching segments (4-neighbourhood) with probability ``merge`` per touching pair."""
    K = owner.size
    pairs = []
    for a, b in ((seg[:, :-1], seg[:, 1:]), (seg[:-1, :], seg[1:, :])):
        m = (a != b) & (a >= 0) & (b >= 0)
        pairs.append(np.stack([np.minimum(a[m], b[m]), np.maximum(a[m], b[m])], 1))
    pairs = np.unique(np.concatenate(pairs), axis=0) if K else np.zeros((0, 2), np.int64)
    chosen = pairs[rng.random(len(pairs)) < noise.merge]
    parent = np.arange(K)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in chosen:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(K)], dtype=np.int64)
    area = np.bincount(seg[seg >= 0], minlength=K)
    new_owner = owner.copy()
    for r in np.unique(roots):
        members = np.nonzero(roots == r)[0]
        new_owner[r] = owner[members[np.argmax(area[members])]]  # caption of the larger part
    lut = np.append(roots, -1).astype(np.int32)
    return lut[seg], new_owner


def _split(seg: np.ndarray, owner: np.ndarray, noise: SyntheticNoise, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Cut large segments at the median of their longer extent (over-segmentation)."""
    K = owner.size
    area = np.bincount(seg[seg >= 0], minlength=K)
    seg = seg.copy()
    new_owner = list(owner)
    for k in np.nonzero(area >= max(noise.split_min_fraction * seg.size, 2))[0]:
        if rng.random() >= noise.split:
            continue
        ys, xs = np.nonzero(seg == k)
        coord = ys if np.ptp(ys) >= np.ptp(xs) else xs
        cut = np.median(coord)
        upper = coord > cut
        if not upper.any() or upper.all():
            continue
        seg[ys[upper], xs[upper]] = len(new_owner)
        new_owner.append(owner[k])
    return seg, np.asarray(new_owner, dtype=owner.dtype)


def _edges(seg: np.ndarray, noise: SyntheticNoise, rng: np.random.Generator) -> np.ndarray:
    """Erode or dilate each chosen segment's boundary by ``edge_px`` (square neighbourhood).

    Every change is computed from the input map, so no pixel moves farther than ``edge_px``
    from an original boundary; dilations are applied after erosions and win over neighbours.
    """
    from scipy import ndimage

    r = noise.edge_px
    struct = np.ones((2 * r + 1, 2 * r + 1), dtype=bool)
    out = seg.copy()
    grow: list[tuple[int, np.ndarray]] = []
    K = int(seg.max(initial=-1)) + 1
    for k in range(K):
        if rng.random() >= noise.edge:
            continue
        dilate = bool(rng.random() < 0.5)
        mask = seg == k
        if not mask.any():
            continue
        if dilate:
            grow.append((k, ndimage.binary_dilation(mask, structure=struct) & ~mask))
        else:
            shrunk = ndimage.binary_erosion(mask, structure=struct, border_value=1)
            out[mask & ~shrunk] = -1
    for k, ring in grow:
        out[ring] = k
    return out


class SyntheticTeacher:
    """``teacher(frame, scene) -> PseudoLabels`` from ``frame.instance_ids`` + ``scene.objects``."""

    name = "synthetic"

    def __init__(self, text_encoder: TextEncoder, noise: SyntheticNoise | None = None) -> None:
        self.text_encoder = text_encoder
        self.noise = noise if noise is not None else SyntheticNoise()

    def settings(self) -> dict[str, Any]:
        return {"noise": to_dict(self.noise), "text_encoder": self.text_encoder.name}

    def segment_and_caption(self, frame: Frame, scene: Scene) -> tuple[np.ndarray, list[str]]:
        """Frame-local segments [H, W] int32 and one caption per segment (no embeddings yet)."""
        if frame.instance_ids is None:
            raise ValueError(f"frame {frame.name!r} has no instance_ids; the synthetic teacher needs the "
                             "rendered instance map (use a synthetic scene, or the samclip/caption teacher)")
        noise = self.noise
        key = _frame_key(scene.scene_id, frame)
        rngs = _rngs(noise, key)
        seg, ids = compact_segments(np.asarray(frame.instance_ids))  # ids = instance id per segment
        owner = ids.astype(np.int64)
        if noise.drop_small:
            seg = _drop_small(seg, noise, rngs["drop_small"])
        if noise.merge:
            seg, owner = _merge(seg, owner, noise, rngs["merge"])
        if noise.split:
            seg, owner = _split(seg, owner, noise, rngs["split"])
        if noise.edge:
            seg = _edges(seg, noise, rngs["edge"])
        seg, kept = compact_segments(seg)
        owner = owner[kept]
        perm = rngs["shuffle"].permutation(len(owner))  # local indices carry no instance identity
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        seg = np.append(inv, -1).astype(np.int32)[seg]  # -1 indexes the last slot: stays -1
        owner = owner[perm]
        return seg, self._captions(owner, scene, key)

    def _captions(self, owner: np.ndarray, scene: Scene, key: int) -> list[str]:
        """Captions per segment; each object's caption noise has its own streams, so it does not
        depend on which other objects this frame's segmentation kept."""
        others: dict[str, list[str]] = {}
        for info in scene.objects.values():
            for attr, value in wording.describable(info.attributes):
                others.setdefault(attr, []).append(value)
        by_object = {}
        for oid in set(int(o) for o in owner):
            info = scene.objects.get(oid) or ObjectInfo(category="object")
            by_object[oid] = _caption(info, self.noise, _rngs(self.noise, key, 1, oid + 1), others)
        return [by_object[int(o)] for o in owner]

    def label_frames(self, frames: list[Frame], scene: Scene) -> list[PseudoLabels]:
        """Label several frames with one text-encoder call over their distinct captions."""
        parts = [self.segment_and_caption(f, scene) for f in frames]
        unique = sorted({c for _, caps in parts for c in caps})
        vectors = self.text_encoder.encode(unique).pooled.float().cpu().numpy() if unique else None
        row = {c: i for i, c in enumerate(unique)}
        prov = {"teacher": self.name, "settings": self.settings()}
        out = []
        for seg, caps in parts:
            emb = vectors[[row[c] for c in caps]] if caps else np.zeros((0, self.text_encoder.dim), np.float32)
            out.append(PseudoLabels(segments=seg, embeddings=emb.astype(np.float32), captions=list(caps),
                                    provenance=dict(prov)))
        return out

    def __call__(self, frame: Frame, scene: Scene | None = None) -> PseudoLabels:
        if scene is None:
            raise ValueError("SyntheticTeacher needs the frame's scene (for object attributes): teacher(frame, scene)")
        return self.label_frames([frame], scene)[0]
