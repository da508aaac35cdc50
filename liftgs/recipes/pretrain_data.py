"""Pre-training samples: a scene's point cloud + one posed view + up to 8 pseudo-label segments.

Paper appendix A.1: each sample is a sparse point cloud and one posed image with its
SAM-CLIP pseudo-labels; up to 8 unique segments are drawn at random (drawing a few, not all,
keeps the model from simply reconstructing the whole image from every embedding). The count
itself is drawn uniformly from 1..8 (``random_count``): zero-shot grounding asks with a single
phrase, and a model only ever shown 5-8 queries at once ranks its proposals badly for one
(measured: rendered dice of the top proposal 0.42 with all of a view's queries, 0.26 with
one at a time, on the same views and model). Their
embeddings become the pseudo language queries Q (one token per segment) and their masks the
2D targets; masks under 1024 pixels at 512x512 are filtered out. Here every random choice of
a sample comes from a generator seeded by (seed, stream position), so a sample is a pure
function of where it sits in the stream (exact resume, see ``sampler.py``).

The data is checked when the dataset is built, before any training step: a scene without any
cached pseudo-label is named in a :class:`~liftgs.io.errors.DataWarning` and left out (a
:class:`~liftgs.io.errors.DataError` when no scene is left), as is a scene labelled only in
part; every frame's camera and file paths are checked by ``read_scene`` (a NaN or all-zero
pose fails here, not at the step that first renders from it).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liftgs.io.errors import DataError, DataWarning
from liftgs.recipes.common import name_list
from liftgs.train.sampler import EpochSampler, sample_rng

REFERENCE_SIZE = 512  # the paper's render / area-filter resolution (appendix A.1)


@dataclass
class ViewData:
    """One frame at the working resolution, with its pseudo-labels."""

    K: Tensor  # [3, 3] float32 scaled to the working size
    viewmat: Tensor  # [4, 4] float32 world -> camera
    rgb: Tensor  # [H, W, 3] float32 in [0, 1]
    segments: Tensor  # [H, W] int64 segment index, -1 = none
    embeddings: Tensor  # [S, F] float32
    areas: np.ndarray  # [S] pixel count of each segment at the working size


@dataclass
class PretrainSample:
    points: Tensor  # [P, 3]
    colors: Tensor  # [P, 3]
    view: ViewData
    queries: Tensor  # [K, F] embeddings of the chosen segments (one token each)
    target_masks: Tensor  # [K, Np] {0, 1} chosen segment k at each sampled pixel
    pixels: Tensor  # [Np] long flat pixel ids y * W + x
    pixel_segments: Tensor  # [Np] long any segment at the pixel, -1 none (feature loss, eq. 7)
    scene_id: str = ""
    negatives: Tensor | None = None  # [Kn, F] other scenes' segment embeddings (feature loss)
    segment_ids: Tensor | None = None  # [K] long: the view's segment behind each query


@dataclass
class _SceneEntry:
    path: Path
    scene_id: str
    points: Tensor
    colors: Tensor
    frames: list[tuple[int, str]]  # (frame index, label key) of labelled frames


def min_area_at(width: int, height: int, min_area_512: int) -> float:
    """The appendix's 1024 px at 512x512, scaled to a ``width`` x ``height`` render."""
    return min_area_512 * (width * height) / float(REFERENCE_SIZE * REFERENCE_SIZE)


def working_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """Scale so the longer side is ``image_size`` (aspect kept, at least 1 px)."""
    s = image_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def resize_nearest(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (keeps segment ids intact)."""
    H, W = arr.shape[:2]
    ys = np.minimum(((np.arange(height) + 0.5) * H / height).astype(np.int64), H - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * W / width).astype(np.int64), W - 1)
    return arr[ys][:, xs]


def resize_area(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box-filtered resize of an image (PIL), float32 in [0, 1]."""
    from PIL import Image

    if rgb.shape[:2] != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BOX))
    return rgb.astype(np.float32) / 255.0


class PretrainDataset:
    """Scenes + cached pseudo-labels -> :class:`PretrainSample` by stream position."""

    def __init__(self, scene_paths: list[Path], label_root: Path, seed: int, image_size: int = 128,
                 max_segments: int = 8, min_area_512: int = 1024, num_pixels: int = 4096,
                 cache_views: int = 256, random_count: bool = True, negatives: int = 0,
                 negative_frames: int = 8, progress: bool = False):
        from liftgs.io.scene_dir import read_scene, read_scene_json
        from liftgs.teachers.store import PseudoLabelStore

        self.store = PseudoLabelStore(label_root)
        self.seed, self.image_size = int(seed), int(image_size)
        self.max_segments, self.min_area_512 = int(max_segments), int(min_area_512)
        self.num_pixels = int(num_pixels)
        self.random_count = bool(random_count)
        self.scenes: list[_SceneEntry] = []
        unlabelled, partial = [], []
        for path in scene_paths:
            doc = read_scene_json(path)
            keys = [(i, e.get("name") or f"{i:06d}") for i, e in enumerate(doc["frames"])]
            labelled = [(i, k) for i, k in keys if self.store.has(doc["scene_id"], k)]
            if not labelled:
                unlabelled.append(doc["scene_id"])
                continue
            if len(labelled) < len(keys):
                partial.append(f"{doc['scene_id']} ({len(labelled)}/{len(keys)})")
            scene = read_scene(path, load_frames=False)  # checks every frame's camera and files
            self.scenes.append(_SceneEntry(path, scene.scene_id, torch.from_numpy(scene.points),
                                           torch.from_numpy(scene.colors), labelled))
        if not self.scenes:
            missing = f" ({name_list(unlabelled)})" if unlabelled else ""
            raise DataError(f"no scene among {len(scene_paths)}{missing} has cached pseudo-labels under "
                            f"{label_root}; run `liftgs pseudolabel` on the same data first",
                            label_root)
        if unlabelled:
            warnings.warn(f"{len(unlabelled)} of {len(scene_paths)} scenes have no pseudo-labels under "
                          f"{label_root} and are left out: {name_list(unlabelled)}", DataWarning, stacklevel=2)
        if partial:
            warnings.warn(f"{len(partial)} scenes have pseudo-labels for only some frames (labelled/all; "
                          f"the rest are not used): {name_list(partial)}", DataWarning, stacklevel=2)
        self.sampler = EpochSampler(len(self.scenes), seed)
        self.negatives = int(negatives)
        self.bank = None
        if self.negatives > 0:  # built once, in scene order: a pure function of the data
            from liftgs.recipes.negatives import NegativeBank

            self.bank = NegativeBank.from_store(self.store, self.scenes, negative_frames, progress)
        self._views: OrderedDict[tuple[int, int], ViewData] = OrderedDict()
        self._cache_views = int(cache_views)

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def embedding_dim(self) -> int:
        entry = self.scenes[0]
        return int(self.view(0, entry.frames[0]).embeddings.shape[1])

    def text_encoder(self) -> str | None:
        """The text encoder of the pseudo-label embeddings (from the first labelled frame of
        every scene; :func:`liftgs.teachers.store.text_encoder_of`): what the trained model's
        queries will be vectors of. None when the provenance does not say; labels of different
        encoders under one root are a ``DataError`` naming two scenes."""
        from liftgs.teachers.store import text_encoder_of

        found: dict[str, str] = {}
        for entry in self.scenes:
            labels = self.store.get(entry.scene_id, entry.frames[0][1])
            name = text_encoder_of(labels.provenance)
            if name is not None:
                found.setdefault(name, entry.scene_id)
            if len(found) > 1:
                (a, sa), (b, sb) = list(found.items())[:2]
                raise DataError(f"pseudo-labels of scene {sa} were embedded by {a!r} and those of {sb} by "
                                f"{b!r}; label every scene with one teacher", self.store.root)
        return next(iter(found), None)

    def view(self, scene_index: int, frame: tuple[int, str]) -> ViewData:
        """A labelled frame at the working size (LRU-cached: training revisits views)."""
        key = (scene_index, frame[0])
        if key in self._views:
            self._views.move_to_end(key)
            return self._views[key]
        data = self._load_view(self.scenes[scene_index], frame)
        self._views[key] = data
        if len(self._views) > self._cache_views:
            self._views.popitem(last=False)
        return data

    def _load_view(self, entry: _SceneEntry, frame: tuple[int, str]) -> ViewData:
        from liftgs.io.scene_dir import read_frame

        index, label_key = frame
        fr = read_frame(entry.path, index)
        labels = self.store.get(entry.scene_id, label_key)
        W, H = working_size(fr.camera.width, fr.camera.height, self.image_size)
        cam = fr.camera.scaled(W, H)
        segments = resize_nearest(labels.segments, W, H).astype(np.int64)
        S = labels.num_segments
        areas = np.bincount(segments[segments >= 0], minlength=S)[:S] if S else np.zeros(0, np.int64)
        return ViewData(K=torch.from_numpy(cam.K).float(), viewmat=torch.from_numpy(cam.viewmat).float(),
                        rgb=torch.from_numpy(resize_area(fr.rgb, W, H)),
                        segments=torch.from_numpy(segments),
                        embeddings=torch.from_numpy(np.asarray(labels.embeddings, dtype=np.float32)),
                        areas=areas)

    def sample(self, position: int) -> PretrainSample:
        """The sample at stream ``position`` (its first view; see :meth:`sample_views`)."""
        return self.sample_views(position, 1)[0]

    def sample_views(self, position: int, views: int = 1) -> list[PretrainSample]:
        """``views`` samples of one scene at stream ``position``: the scene comes from the epoch
        permutation; each view is a frame with at least one segment above the area threshold
        (a few tries; distinct frames while the scene has enough), then its segments and
        pixels. Every choice is drawn from the (seed, position) generator, in order, so view 0
        is the same whatever ``views`` is."""
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        rng = sample_rng(self.seed, position)
        si = self.sampler.item(position)
        entry = self.scenes[si]
        used: set[int] = set()
        out = []
        for _ in range(views):
            view, frame_index = self._pick_view(rng, si, entry, used)
            used.add(frame_index)
            sample = self._draw_targets(rng, entry, view)
            if self.bank is not None:
                sample.negatives = self.bank.draw(rng, si, self.negatives)
            out.append(sample)
        return out

    def _pick_view(self, rng: np.random.Generator, si: int, entry: _SceneEntry,
                   used: set[int]) -> tuple[ViewData, int]:
        fresh = [f for f in entry.frames if f[0] not in used] or entry.frames
        for _ in range(8):
            frame = fresh[int(rng.integers(len(fresh)))]
            view = self.view(si, frame)
            H, W = view.segments.shape
            if (view.areas >= min_area_at(W, H, self.min_area_512)).any():
                break
        return view, frame[0]

    def _draw_targets(self, rng: np.random.Generator, entry: _SceneEntry, view: ViewData) -> PretrainSample:
        H, W = view.segments.shape
        valid = np.flatnonzero(view.areas >= min_area_at(W, H, self.min_area_512))
        if valid.size and self.random_count:  # "up to 8": 1..8 drawn uniformly
            count = int(rng.integers(1, min(self.max_segments, valid.size) + 1))
        else:
            count = self.max_segments
        chosen = rng.permutation(valid)[:count] if valid.size else valid
        if self.num_pixels == 0:  # the full render supervises
            pixels = torch.arange(H * W)
        else:
            npx = min(self.num_pixels, H * W)
            pixels = torch.from_numpy(np.sort(rng.choice(H * W, size=npx, replace=False)))
        seg_at = view.segments.reshape(-1)[pixels]  # [Np]
        chosen_t = torch.from_numpy(chosen.astype(np.int64))
        target_masks = (seg_at[None, :] == chosen_t[:, None]).float()  # [K, Np]
        return PretrainSample(points=entry.points, colors=entry.colors, view=view,
                              queries=view.embeddings[chosen_t], target_masks=target_masks,
                              pixels=pixels, pixel_segments=seg_at, scene_id=entry.scene_id,
                              segment_ids=chosen_t)
