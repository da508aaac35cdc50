"""GenSplat training samples: a scene's reconstructed Gaussians + sampled views of its scan + 2D
targets at sampled pixels (GenSplat summary, Key Designs 1, stages I and II).

Inputs, all checked when the dataset is built, before any training step:

* scene directories (``liftgs synth`` / ``liftgs convert`` output): cameras, frame files,
  per-frame instance maps (``frames[i].instance``) and the objects' categories;
* a reconstruction root holding ``<recon>/<scene_id>/gaussians.ply`` (``liftgs recon``), read
  with :func:`liftgs.io.splat_ply.read_splat_ply` into
  :meth:`liftgs.models.gensplat.GaussianInput.from_splat`;
* stage I (and optionally stage II): a pseudo-label cache (``liftgs pseudolabel``,
  :class:`~liftgs.teachers.store.PseudoLabelStore`).

A scene without a reconstruction, a stage-I scene without any cached label, a label cache of
another embedding width and an unreadable PLY are each one :class:`~liftgs.io.errors.DataError`
naming the file. Frames without labels (stage I) or without instance maps and labels (stage II)
are left out with a :class:`~liftgs.io.errors.DataWarning`.

**Stage I ("semantic").** A sample is V distinct labelled frames of one scene; in each, P pixels
are drawn uniformly among the labelled pixels (segment >= 0; unlabelled pixels never enter the
loss) and each pixel's target is its segment's embedding as the cache stores it (the
``liftgs.teachers`` teachers store L2-normalised vectors; they are not normalised again here).
Every frame of the scan can be drawn, including frames a reconstruction held out for its own
evaluation: they are frames of the scan like any other.

**Stage II ("instance").** A sample is V distinct frames of one scene with their 2D instance
masks: the ground-truth instance map of the frame where the scene has one, else the teacher's
segments. A ground-truth instance's class is its object's category (``scene.json`` objects);
a teacher segment's class is the vocabulary class whose text embedding is nearest (cosine) to
the segment's embedding. Ground-truth instance ids name the same object in every view, so the
views with ground truth form one matching group (their sampled pixels are concatenated and the
Hungarian matching of the scene runs over all of them); teacher segments are frame-local, so
each teacher-labelled view is a group of its own. An instance is a target when its class is
known and it covers at least ``min_instance_pixels`` pixels (working resolution) over the views
of its group; the pixels of other instances (no category, too small) are never sampled (ignored,
as ScanNet's ignore label); pixels of no instance are background. P pixels per view: half drawn
among the targets' pixels, the rest uniformly among the remaining background and target pixels
(without repeats), so small objects get pixels while the background still teaches where objects
end.

Every random choice of a sample comes from a generator seeded by (seed, stream position), so a
sample is a pure function of its position (exact resume, :mod:`liftgs.train.sampler`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liftgs.io.errors import DataError, DataWarning
from liftgs.recipes.common import name_list
from liftgs.recipes.pretrain_data import resize_nearest, working_size
from liftgs.train.sampler import EpochSampler, sample_rng

STAGES = ("semantic", "instance")
RECON_FILE = "gaussians.ply"
BACKGROUND, IGNORE = -1, -2  # values of a view's unit map besides unit ids >= 0


@dataclass
class SampledView:
    """One frame at the working resolution and its sampled pixels."""

    frame: int  # frame index in scene.json
    K: Tensor  # [3, 3] float32, scaled to the working size
    viewmat: Tensor  # [4, 4] float32 world -> camera
    width: int
    height: int
    pixels: Tensor  # [P] long, flat ids y * W + x, ascending
    targets: Tensor | None = None  # stage I: [P, F] embedding of each pixel's segment


@dataclass
class InstanceTargets:
    """The targets of one matching group: views whose instance ids agree (stage II)."""

    views: list[int]  # indices into GenSplatSample.views; their pixels concatenated in this order
    masks: Tensor  # [K, sum of the views' P] float {0, 1}
    classes: Tensor  # [K] long, vocabulary index
    ids: list[int] = field(default_factory=list)  # instance id (ground truth) or segment index (teacher)
    source: str = "gt"  # "gt" or "teacher"


@dataclass
class GenSplatSample:
    scene_id: str
    gaussians: object  # liftgs.models.gensplat.GaussianInput
    views: list[SampledView]
    groups: list[InstanceTargets] = field(default_factory=list)  # stage II

    @property
    def num_targets(self) -> int:
        return sum(int(g.masks.shape[0]) for g in self.groups)


@dataclass
class _Frame:
    index: int
    key: str  # pseudo-label cache key
    instance: Path | None  # ground-truth instance map, if the scene has one
    labelled: bool


@dataclass
class _Scene:
    path: Path
    scene_id: str
    ply: Path
    frames: list[_Frame]
    cameras: dict[int, object]  # frame index -> liftgs.types.Camera at the working size
    classes: dict[int, int]  # object id -> vocabulary index (stage II)


@dataclass
class _ViewMaps:
    """A frame's targets at the working size (cached): stage I segments + embeddings, or
    stage II units (instance ids / segment indices, BACKGROUND, IGNORE) + their classes."""

    labels: np.ndarray  # [H * W] int32
    embeddings: np.ndarray | None = None  # stage I: [S, F] float32
    unit_classes: dict[int, int] = field(default_factory=dict)  # stage II: unit -> class
    source: str = "gt"


def load_gaussians(path: Path):
    """A reconstruction's Gaussians as the model's input (``GaussianInput``); a missing,
    malformed, empty or non-finite file is a :class:`DataError` naming it."""
    from liftgs.io.splat_ply import read_splat_ply
    from liftgs.models.gensplat import GaussianInput

    if not Path(path).is_file():
        raise DataError("reconstruction not found (run `liftgs recon` on the scenes first)", path)
    cloud = read_splat_ply(path)
    if cloud.num_gaussians == 0:
        raise DataError("the reconstruction holds no Gaussians", path)
    for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
        if not np.isfinite(getattr(cloud, name)).all():
            raise DataError(f"field {name} holds NaN or infinite values", path)
    return GaussianInput.from_splat(cloud)


class GenSplatDataset:
    """Scenes + reconstructions (+ pseudo-labels) -> :class:`GenSplatSample` by stream position.

    ``stage``: "semantic" (needs ``label_root``) or "instance" (needs ``text_encoder`` for the
    class names; ``label_root`` optional, used for frames without ground-truth instance maps).
    """

    def __init__(self, scene_paths: list[Path], recon_root: Path, stage: str, seed: int,
                 label_root: Path | None = None, text_encoder=None, image_size: int = 128,
                 num_pixels: int = 2048, views: int = 2, instance_fraction: float = 0.5,
                 min_instance_pixels: int = 16, cache_views: int = 2048, cache_scenes: int = 64,
                 progress: bool = False):
        from liftgs.io.scene_dir import read_cameras, read_scene_json, scene_file
        from liftgs.teachers.store import PseudoLabelStore

        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if stage == "semantic" and label_root is None:
            raise ValueError("stage I (semantic) needs a pseudo-label cache (--labels DIR)")
        if stage == "instance" and text_encoder is None:
            raise ValueError("stage II (instance) needs a text encoder for the class names")
        for name, value in (("image_size", image_size), ("num_pixels", num_pixels), ("views", views)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= instance_fraction <= 1.0:
            raise ValueError(f"instance_fraction must be in [0, 1], got {instance_fraction}")
        if not scene_paths:
            raise DataError("no scenes to train on (empty dataset or split)")
        self.stage, self.seed = stage, int(seed)
        self.image_size, self.num_pixels, self.views = int(image_size), int(num_pixels), int(views)
        self.instance_fraction, self.min_instance_pixels = float(instance_fraction), int(min_instance_pixels)
        self.recon_root = Path(recon_root)
        self.store = PseudoLabelStore(label_root) if label_root is not None else None
        if not self.recon_root.is_dir():
            raise DataError("reconstruction root is not a directory (run `liftgs recon` first)", self.recon_root)
        if self.store is not None and not self.store.root.is_dir():
            raise DataError("pseudo-label root is not a directory (run `liftgs pseudolabel` first)", self.store.root)

        docs = [(Path(p), read_scene_json(p)) for p in scene_paths]
        plys = [self.recon_root / doc["scene_id"] / RECON_FILE for _, doc in docs]
        missing = [(doc["scene_id"], p) for (_, doc), p in zip(docs, plys) if not p.is_file()]
        if missing:
            raise DataError(f"no such file: {len(missing)} of {len(docs)} scenes have no reconstruction "
                            f"({name_list([m[0] for m in missing])}); run `liftgs recon --data DIR --out "
                            f"{self.recon_root}` first", missing[0][1])
        self.vocabulary: list[str] = []
        self.class_text: Tensor | None = None
        if stage == "instance":
            self.vocabulary = sorted({str(o["category"]) for _, doc in docs for o in doc["objects"]
                                      if isinstance(o, dict) and o.get("category")})
            if not self.vocabulary:
                raise DataError("stage II needs object categories but no scene.json lists any objects",
                                docs[0][0] / "scene.json")
            with torch.no_grad():
                self.class_text = text_encoder.encode(self.vocabulary).pooled.float().cpu()  # [K, F]
        self.class_index = {c: i for i, c in enumerate(self.vocabulary)}

        self.scenes: list[_Scene] = []
        left_out: list[str] = []
        self.embedding_dim: int | None = None
        dim_source: Path | None = None
        for (path, doc), ply in zip(docs, plys):
            sid = doc["scene_id"]
            frames = []
            for i, entry in enumerate(doc["frames"]):
                key = entry.get("name") or f"{i:06d}"
                inst = scene_file(path, entry["instance"], f"frames[{i}].instance") if entry.get("instance") else None
                labelled = self.store is not None and self.store.has(sid, key)
                frames.append(_Frame(i, key, inst, labelled))
            usable = [f for f in frames if f.labelled] if stage == "semantic" else \
                [f for f in frames if f.instance is not None or f.labelled]
            if not usable:
                where = (self.store.root / sid) if stage == "semantic" else path / "scene.json"
                what = ("no cached pseudo-label for any frame (run `liftgs pseudolabel` on the same data)"
                        if stage == "semantic" else
                        "no frame has an instance map, and no pseudo-label cache covers it (pass --labels)")
                raise DataError(f"scene {sid}: {what}", where)
            if len(usable) < len(frames):
                left_out.append(f"{sid} ({len(usable)}/{len(frames)})")
            if self.store is not None:  # the label width, checked on one file per scene
                first = next((f for f in usable if f.labelled), None)
                if first is not None:
                    file = self.store.path(sid, first.key)
                    dim = int(self.store.get(sid, first.key).embeddings.shape[1])
                    if self.embedding_dim is None:
                        self.embedding_dim, dim_source = dim, file
                    elif dim != self.embedding_dim:
                        raise DataError(f"pseudo-label embeddings are {dim}-d but {dim_source} holds "
                                        f"{self.embedding_dim}-d ones; label every scene with one text encoder",
                                        file)
            cameras = {}
            for i, cam in enumerate(read_cameras(path)):  # checks every frame's camera and files
                W, H = working_size(cam.width, cam.height, self.image_size)
                cameras[i] = cam.scaled(W, H)
            classes = {}
            for o in doc["objects"]:
                if isinstance(o, dict) and o.get("category") and str(o["category"]) in self.class_index:
                    classes[int(o["id"])] = self.class_index[str(o["category"])]
            self.scenes.append(_Scene(path, sid, ply, usable, cameras, classes))
        if left_out:
            what = "pseudo-labels" if stage == "semantic" else "instance maps or pseudo-labels"
            warnings.warn(f"{len(left_out)} scenes have {what} for only some frames (usable/all; the rest "
                          f"are not used): {name_list(left_out)}", DataWarning, stacklevel=2)
        if (stage == "instance" and self.embedding_dim is not None and self.class_text is not None
                and self.class_text.shape[1] != self.embedding_dim):
            raise DataError(f"pseudo-label embeddings are {self.embedding_dim}-d but the text encoder gives "
                            f"{self.class_text.shape[1]}-d class vectors; use the labels' text encoder",
                            dim_source)

        self._gaussians: OrderedDict[int, object] = OrderedDict()
        self._cache_scenes = max(1, int(cache_scenes))
        self._views: OrderedDict[tuple[int, int], _ViewMaps] = OrderedDict()
        self._cache_views = max(1, int(cache_views))
        from tqdm.auto import tqdm

        for si in tqdm(range(len(self.scenes)), desc="read reconstructions", disable=not progress):
            self.gaussians(si)  # every PLY is read (and so checked) now; the first ones stay cached
        self.sampler = EpochSampler(len(self.scenes), seed)

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def scene_ids(self) -> list[str]:
        return [s.scene_id for s in self.scenes]

    def gaussians(self, scene_index: int):
        """The scene's ``GaussianInput`` (LRU-cached, ``cache_scenes`` scenes)."""
        if scene_index in self._gaussians:
            self._gaussians.move_to_end(scene_index)
            return self._gaussians[scene_index]
        g = load_gaussians(self.scenes[scene_index].ply)
        self._gaussians[scene_index] = g
        if len(self._gaussians) > self._cache_scenes:
            self._gaussians.popitem(last=False)
        return g

    # ----------------------------------------------------------------- per-view target maps
    def view_maps(self, scene_index: int, frame: _Frame) -> _ViewMaps:
        key = (scene_index, frame.index)
        if key in self._views:
            self._views.move_to_end(key)
            return self._views[key]
        maps = self._load_maps(self.scenes[scene_index], frame)
        self._views[key] = maps
        if len(self._views) > self._cache_views:
            self._views.popitem(last=False)
        return maps

    def _load_maps(self, scene: _Scene, frame: _Frame) -> _ViewMaps:
        from liftgs.io.images import read_instance_png

        cam = scene.cameras[frame.index]
        W, H = cam.width, cam.height
        if self.stage == "semantic" or frame.instance is None:
            labels = self.store.get(scene.scene_id, frame.key)
            seg = resize_nearest(labels.segments, W, H).astype(np.int32).reshape(-1)
            emb = np.asarray(labels.embeddings, dtype=np.float32)
            if self.stage == "semantic":
                return _ViewMaps(labels=seg, embeddings=emb)
            # teacher segments: class = nearest class-name embedding (cosine)
            e = torch.nn.functional.normalize(torch.from_numpy(emb), dim=-1)
            t = torch.nn.functional.normalize(self.class_text, dim=-1)
            cls = (e @ t.T).argmax(1).tolist() if emb.shape[0] else []
            return _ViewMaps(labels=seg, unit_classes=dict(enumerate(cls)), source="teacher")
        ids = read_instance_png(frame.instance)
        ids = resize_nearest(ids, W, H).astype(np.int32).reshape(-1)
        units = np.unique(ids[ids >= 0])
        known = {int(u): scene.classes[int(u)] for u in units if int(u) in scene.classes}
        unknown = [int(u) for u in units if int(u) not in known]
        if unknown:
            ids = np.where(np.isin(ids, unknown), IGNORE, ids).astype(np.int32)
        return _ViewMaps(labels=ids, unit_classes=known, source="gt")

    # ------------------------------------------------------------------------------ samples
    def sample(self, position: int) -> GenSplatSample:
        """The sample at stream ``position``: its scene from the epoch permutation, then views
        and pixels drawn from the (seed, position) generator, in order."""
        rng = sample_rng(self.seed, position)
        si = self.sampler.item(position)
        scene = self.scenes[si]
        frames = self._pick_frames(rng, si, scene)
        if self.stage == "semantic":
            views = [self._semantic_view(rng, si, scene, f) for f in frames]
            return GenSplatSample(scene.scene_id, self.gaussians(si), views)
        return self._instance_sample(rng, si, scene, frames)

    def _usable(self, maps: _ViewMaps) -> bool:
        if self.stage == "semantic":
            return bool((maps.labels >= 0).any())
        return bool(maps.unit_classes)

    def _pick_frames(self, rng: np.random.Generator, si: int, scene: _Scene) -> list[_Frame]:
        """V distinct frames (all of them when the scene has fewer); a frame with nothing to
        learn from (no labelled pixel / no instance) is redrawn up to 8 times."""
        chosen: list[_Frame] = []
        for _ in range(min(self.views, len(scene.frames))):
            fresh = [f for f in scene.frames if f not in chosen]
            for _ in range(8):
                frame = fresh[int(rng.integers(len(fresh)))]
                if self._usable(self.view_maps(si, frame)):
                    break
            chosen.append(frame)
        return chosen

    def _view(self, scene: _Scene, frame: _Frame, pixels: np.ndarray) -> SampledView:
        cam = scene.cameras[frame.index]
        return SampledView(frame=frame.index, K=torch.from_numpy(cam.K).float(),
                           viewmat=torch.from_numpy(cam.viewmat).float(), width=cam.width,
                           height=cam.height, pixels=torch.from_numpy(np.sort(pixels).astype(np.int64)))

    def _semantic_view(self, rng: np.random.Generator, si: int, scene: _Scene, frame: _Frame) -> SampledView:
        maps = self.view_maps(si, frame)
        labelled = np.flatnonzero(maps.labels >= 0)
        n = min(self.num_pixels, labelled.size)
        pixels = np.sort(rng.choice(labelled, size=n, replace=False)) if n else labelled
        view = self._view(scene, frame, pixels)
        view.targets = torch.from_numpy(maps.embeddings[maps.labels[pixels]])  # [P, F]
        return view

    def _instance_sample(self, rng: np.random.Generator, si: int, scene: _Scene,
                         frames: list[_Frame]) -> GenSplatSample:
        maps = [self.view_maps(si, f) for f in frames]
        gt = [i for i, m in enumerate(maps) if m.source == "gt"]
        groups = ([gt] if gt else []) + [[i] for i, m in enumerate(maps) if m.source == "teacher"]
        views: list[SampledView | None] = [None] * len(frames)
        out_groups = []
        for members in groups:
            counts: dict[int, int] = {}
            for i in members:
                lab = maps[i].labels
                u, c = np.unique(lab[lab >= 0], return_counts=True)
                for k, n in zip(u.tolist(), c.tolist()):
                    if k in maps[i].unit_classes:
                        counts[k] = counts.get(k, 0) + n
            targets = sorted(k for k, n in counts.items() if n >= self.min_instance_pixels)
            at_pixels = []
            for i in members:
                pixels, unit = self._instance_pixels(rng, maps[i].labels, targets)
                views[i] = self._view(scene, frames[i], pixels)
                at_pixels.append(unit)
            unit = np.concatenate(at_pixels) if at_pixels else np.zeros(0, np.int32)
            ids = np.asarray(targets, dtype=np.int64)
            masks = torch.from_numpy((unit[None, :] == ids[:, None]).astype(np.float32))
            unit_class: dict[int, int] = {}
            for i in members:
                unit_class.update(maps[i].unit_classes)
            classes = torch.tensor([unit_class[k] for k in targets], dtype=torch.long)
            out_groups.append(InstanceTargets(views=list(members), masks=masks.reshape(len(targets), -1),
                                              classes=classes, ids=list(targets), source=maps[members[0]].source))
        return GenSplatSample(scene.scene_id, self.gaussians(si), views, out_groups)

    def _instance_pixels(self, rng: np.random.Generator, labels: np.ndarray,
                         targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Sorted pixels of one view (half on the targets, the rest uniform over the remaining
        target and background pixels) and the unit at each (-1 = background)."""
        on_target = np.isin(labels, np.asarray(targets, dtype=np.int32)) if targets else np.zeros(labels.size, bool)
        inside = np.flatnonzero(on_target)
        n_in = min(int(round(self.num_pixels * self.instance_fraction)), inside.size)
        first = rng.choice(inside, size=n_in, replace=False) if n_in else inside[:0]
        valid = on_target | (labels == BACKGROUND)
        valid[first] = False
        rest_pool = np.flatnonzero(valid)
        n_rest = min(self.num_pixels - n_in, rest_pool.size)
        rest = rng.choice(rest_pool, size=n_rest, replace=False) if n_rest else rest_pool[:0]
        pixels = np.sort(np.concatenate([first, rest]))
        unit = np.where(on_target[pixels], labels[pixels], BACKGROUND).astype(np.int32)
        return pixels, unit
