"""Per-scene inputs of GenSplat's stage III and of GAFS, computed once with a frozen stage-II model.

Stage III (free-form text, GenSplat summary, Key Designs 1 (III) and 2) and the frame selector
GAFS (Key Designs 3) both read the same things about a scene, and none of them changes while
they train: the stage-II model is fixed, so its per-Gaussian latents L, pooled tokens L^ and
instance queries O_ins are computed once per scene and cached. Next to them the cache keeps
what the views contribute: every frame's image at ``image_size`` x ``image_size``, its camera,
how many pixels of every annotated object it shows -- counted on its ground-truth instance map
(``visible_pixels``) and on the reconstruction rendered from its camera
(``rendered_pixels``, :func:`render_view_stats`) -- and which Gaussians it sees (``seen``): those
whose rendering weights over the view's pixels add up to at least :data:`SEEN_WEIGHT` (half a
pixel), so a Gaussian hidden behind an opaque surface or outside the frame is not seen. GAFS
reads, per view, a seeded draw of at most ``max_per_view`` of them (``view_index``); stage III
reads ``seen`` itself through :meth:`SceneFeatures.view_prior`.

Ground truth over the Gaussians: a Gaussian takes the object id of the nearest point of the
scene's labelled point cloud when that point is within ``label_radius`` metres (else -1). The
referring targets of stage III are these ids; evaluation scores on the points instead
(:mod:`liftgs.eval.gensplat_language`).

One file per scene, ``<cache>/<scene_id>.safetensors`` (no pickle), written atomically. Its
metadata records the stage-II model's weight hash, the cache settings and the inputs (scene
folder, reconstruction file with its size and time); a file made with another model, other
settings or from other inputs is recomputed, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liftgs.io.errors import DataError
from liftgs.models.gensplat import GenSplat, PooledTokens

FORMAT = "liftgs-gensplat-scene-features"
VERSION = 3
RECON_FILE = "gaussians.ply"
VISIBILITY_SOURCES = ("instance", "rendered")  # SceneFeatures.visible(source=...)
RENDERED_SHARE = 0.5  # a rendered pixel shows an object when the object's composited share exceeds this
SEEN_WEIGHT = 0.5  # a view sees a Gaussian whose rendering weights over its pixels sum to at least this


@dataclass(frozen=True)
class SceneCacheConfig:
    """How scene features are computed (recorded in every cache file)."""

    image_size: int = 64  # views stored at image_size x image_size (uint8)
    max_per_view: int = 256  # seen Gaussians kept per view in view_index (seeded subsample)
    label_radius: float = 0.08  # metres: a Gaussian further from every labelled point is unlabelled (-1)
    seed: int = 0  # seed of the visible-Gaussian subsample

    def __post_init__(self) -> None:
        for name in ("image_size", "max_per_view"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SceneCacheConfig.{name} must be an integer >= 1, got {value!r}")
        if not (np.isfinite(self.label_radius) and self.label_radius > 0):
            raise ValueError(f"SceneCacheConfig.label_radius must be > 0, got {self.label_radius}")

    def key(self) -> str:
        return json.dumps({"image_size": self.image_size, "max_per_view": self.max_per_view,
                           "label_radius": self.label_radius, "seed": self.seed}, sort_keys=True)


@dataclass
class SceneFeatures:
    """Everything stage III and GAFS read about one scene (CPU tensors)."""

    scene_id: str
    latents: Tensor  # [N, C] float32, stage-II encoder output L
    means: Tensor  # [N, 3] float32 Gaussian centres
    pooled: PooledTokens  # L^
    instance_queries: Tensor  # [Q, D] O_ins of the stage-II decoder's last layer
    gaussian_ids: Tensor  # [N] int64 object id of every Gaussian (-1: none)
    images: Tensor  # [F, 3, S, S] uint8
    viewmats: Tensor  # [F, 4, 4] float64 world -> camera
    intrinsics: Tensor  # [F, 3, 3] float64, at width x height
    width: int
    height: int
    object_ids: Tensor  # [O] int64 annotated objects
    visible_pixels: Tensor  # [F, O] int64 pixels of each object in each frame's instance map
    rendered_pixels: Tensor  # [F, O] int64 pixels where each object's Gaussians render (rendered_object_pixels)
    view_index: Tensor  # [F, M] int64 a seeded draw of the Gaussians each view sees, padded with -1
    seen: Tensor  # [F, N] bool: the Gaussians each view sees (rendering weight >= SEEN_WEIGHT)

    @property
    def num_views(self) -> int:
        return int(self.viewmats.shape[0])

    def centre(self) -> Tensor:
        """[3] the scene centre the decoders and the scorer use (pooled tokens' centre)."""
        return self.pooled.scene_centre()

    def visible(self, target_ids: Sequence[int], min_pixels: int = 16, source: str = "instance") -> np.ndarray:
        """Bool [F]: the frames that show at least ``min_pixels`` pixels of the targets (summed
        over them) -- GAFS's per-view labels s^_i. ``source``: "instance" counts the frames'
        ground-truth instance maps (``visible_pixels``), "rendered" the pixels where the
        targets' Gaussians render (``rendered_pixels``)."""
        if source not in VISIBILITY_SOURCES:
            raise ValueError(f"visible: source must be one of {list(VISIBILITY_SOURCES)}, got {source!r}")
        counts = self.visible_pixels if source == "instance" else self.rendered_pixels
        targets = {int(t) for t in target_ids}
        cols = [int(i) for i, o in enumerate(self.object_ids.tolist()) if o in targets]
        if not cols:
            return np.zeros(self.num_views, dtype=bool)
        return (counts[:, cols].sum(1) >= min_pixels).numpy()

    def view_prior(self, views: Sequence[int]) -> Tensor:
        """[N] float32: the share of ``views`` that see each Gaussian (:attr:`seen`) -- where the
        selected frames looked. Zeros for no views."""
        rows = [int(v) for v in views]
        if not rows:
            return torch.zeros(self.seen.shape[1], dtype=torch.float32)
        return self.seen[rows].float().mean(0)

    def view_sets(self, views: Sequence[int] | None = None) -> list[Tensor]:
        """The visible-Gaussian index lists of ``views`` (all by default)."""
        rows = range(self.num_views) if views is None else views
        return [self.view_index[int(v)][self.view_index[int(v)] >= 0] for v in rows]

    def view_context(self, views: Sequence[int] | None = None) -> Tensor:
        """[V, C + 9] per-view context for the compact reasoner: the mean latent of the
        Gaussians the view sees (zeros when none), the camera centre and viewing direction, and
        the mean position of the seen Gaussians, positions relative to :meth:`centre`."""
        rows = list(range(self.num_views)) if views is None else [int(v) for v in views]
        centre = self.centre()
        out = []
        for v, idx in zip(rows, self.view_sets(rows)):
            vm = self.viewmats[v]
            R, t = vm[:3, :3], vm[:3, 3]
            cam = (-(R.T @ t)).float() - centre
            forward = R[2].float()  # camera +z (OpenCV) in world coordinates
            if idx.numel():
                lat = self.latents[idx].mean(0)
                pos = self.means[idx].mean(0) - centre
            else:
                lat = self.latents.new_zeros(self.latents.shape[1])
                pos = self.means.new_zeros(3)
            out.append(torch.cat([lat, cam, forward, pos]))
        return torch.stack(out) if out else self.latents.new_zeros((0, self.latents.shape[1] + 9))

    # ------------------------------------------------------------------ persistence
    def tensors(self) -> dict[str, Tensor]:
        p = self.pooled
        return {"latents": self.latents, "means": self.means, "pooled.tokens": p.tokens, "pooled.xyz": p.xyz,
                "pooled.assignment": p.assignment, "pooled.valid": p.valid.to(torch.uint8),
                "instance_queries": self.instance_queries, "gaussian_ids": self.gaussian_ids,
                "images": self.images, "viewmats": self.viewmats, "intrinsics": self.intrinsics,
                "object_ids": self.object_ids, "visible_pixels": self.visible_pixels,
                "rendered_pixels": self.rendered_pixels, "view_index": self.view_index,
                "seen": self.seen.to(torch.uint8)}

    @classmethod
    def from_tensors(cls, scene_id: str, t: dict[str, Tensor], width: int, height: int) -> SceneFeatures:
        pooled = PooledTokens(tokens=t["pooled.tokens"], xyz=t["pooled.xyz"], assignment=t["pooled.assignment"],
                              valid=t["pooled.valid"].bool())
        return cls(scene_id=scene_id, latents=t["latents"], means=t["means"], pooled=pooled,
                   instance_queries=t["instance_queries"], gaussian_ids=t["gaussian_ids"], images=t["images"],
                   viewmats=t["viewmats"], intrinsics=t["intrinsics"], width=int(width), height=int(height),
                   object_ids=t["object_ids"], visible_pixels=t["visible_pixels"],
                   rendered_pixels=t["rendered_pixels"], view_index=t["view_index"], seen=t["seen"].bool())


def model_fingerprint(model: GenSplat) -> str:
    """sha256 over a stage-II model's parameters and buffers (names, shapes, bytes)."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                 if value.numel() else b"")
    return h.hexdigest()


def gaussian_labels(means: np.ndarray, points: np.ndarray, instance_ids: np.ndarray, radius: float) -> np.ndarray:
    """[N] int64: the instance id of each Gaussian centre's nearest labelled point, -1 when that
    point is further than ``radius`` (or the scene has no points)."""
    from scipy.spatial import cKDTree

    if points.shape[0] == 0:
        return np.full(means.shape[0], -1, np.int64)
    dist, index = cKDTree(points).query(means, k=1)
    ids = np.asarray(instance_ids, np.int64)[index]
    ids[dist > radius] = -1
    return ids


@torch.no_grad()
def render_view_stats(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, gaussian_ids: Tensor,
                      object_ids: Tensor, cameras: Sequence, min_weight: float = SEEN_WEIGHT
                      ) -> tuple[Tensor, Tensor]:
    """What each camera (a :class:`liftgs.types.Camera`, rendered at its own size) shows of the
    Gaussians rendered by :mod:`liftgs.render`, one render per camera:

    * ``rendered`` [F, O] int64: the number of pixels where object ``object_ids[o]`` shows. Each
      Gaussian carries a one-hot indicator of its object id (``gaussian_ids``, -1 = none: all
      zeros); composited front to back, a pixel's value for an object is that object's
      alpha-weighted share of the pixel (occlusion-aware: Gaussians behind an opaque surface add
      nothing), and the pixel counts for the object when the share exceeds :data:`RENDERED_SHARE`.
    * ``seen`` [F, N] bool: the Gaussians whose compositing weights (alpha times transmittance)
      over the camera's pixels sum to at least ``min_weight``.

    No gradient."""
    from liftgs.render import composite, render_weights

    F, O, N = len(cameras), int(object_ids.numel()), int(means.shape[0])
    rendered = torch.zeros((F, O), dtype=torch.long)
    seen = torch.zeros((F, N), dtype=torch.bool)
    ids = gaussian_ids.to(device=means.device, dtype=torch.long).reshape(-1, 1)
    onehot = ((ids >= 0) & (ids == object_ids.to(device=means.device, dtype=torch.long).reshape(1, -1))
              ).to(means.dtype)  # [N, O]
    labelled = bool(onehot.any())
    for f, cam in enumerate(cameras):
        viewmat = torch.as_tensor(np.asarray(cam.viewmat), dtype=means.dtype, device=means.device)
        K = torch.as_tensor(np.asarray(cam.K), dtype=means.dtype, device=means.device)
        weights = render_weights(means, quats, scales, opacities, viewmat, K, cam.width, cam.height)
        if labelled:
            share, _ = composite(weights, onehot)
            rendered[f] = (share > RENDERED_SHARE).sum(0).cpu()
        _, cols, values = weights.to_coo()
        total = torch.zeros(N, dtype=torch.float64).index_add_(0, cols.cpu(), values.detach().cpu().double())
        seen[f] = total >= min_weight
    return rendered, seen


def rendered_object_pixels(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, gaussian_ids: Tensor,
                           object_ids: Tensor, cameras: Sequence) -> Tensor:
    """[F, O] int64: the ``rendered`` counts of :func:`render_view_stats`."""
    return render_view_stats(means, quats, scales, opacities, gaussian_ids, object_ids, cameras)[0]


def _draw(index: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """At most ``k`` of ``index`` (ascending), drawn uniformly without replacement."""
    if index.numel() <= k:
        return index
    return index[torch.randperm(index.numel(), generator=generator)[:k]].sort().values


@torch.no_grad()
def compute_scene_features(model: GenSplat, scene_path: Path, recon_ply: Path, config: SceneCacheConfig,
                           labels: bool = True) -> SceneFeatures:
    """The :class:`SceneFeatures` of one scene directory and its reconstruction.

    ``labels=True`` (training, evaluation) requires instance ids on the points and an instance
    map on every frame; ``labels=False`` (inference on a user's scan) uses them when present
    and otherwise leaves the Gaussians unlabelled (-1) and the visible and rendered pixels zero."""
    import torch.nn.functional as F

    from liftgs.io.scene_dir import read_scene
    from liftgs.recipes.gensplat_data import load_gaussians

    scene = read_scene(scene_path)
    if not scene.frames:
        raise DataError("the scene has no frames", Path(scene_path) / "scene.json")
    if labels:
        if scene.instance_ids is None:
            raise DataError("the scene's points have no instance ids (stage III needs labelled points)",
                            Path(scene_path) / "scene.json")
        missing = [f.name or str(i) for i, f in enumerate(scene.frames) if f.instance_ids is None]
        if missing:
            raise DataError(f"frames without an instance map: {', '.join(missing[:5])}",
                            Path(scene_path) / "scene.json")
    g = load_gaussians(recon_ply)
    model.eval()
    device = next(model.parameters()).device
    latents = model.encode(g.to(device=device)).float()
    means = g.means.to(device=device, dtype=latents.dtype)
    pooled = model.pool(latents, means)
    empty = torch.zeros((0, model.text_dim), device=device, dtype=latents.dtype)
    out = model.decode(latents, means, pooled, empty)
    cpu = lambda x: x.detach().cpu()  # noqa: E731
    latents, means = cpu(latents), cpu(means)
    pooled = PooledTokens(tokens=cpu(pooled.tokens).float(), xyz=cpu(pooled.xyz).float(),
                          assignment=cpu(pooled.assignment), valid=cpu(pooled.valid))
    if scene.instance_ids is not None:
        ids = gaussian_labels(means.numpy().astype(np.float64), np.asarray(scene.points, np.float64),
                              scene.instance_ids, config.label_radius)
    else:
        ids = np.full(means.shape[0], -1, np.int64)
    object_ids = np.array(sorted(int(k) for k in scene.objects), np.int64)
    S = config.image_size
    images, viewmats, Ks, counts = [], [], [], []
    gen = torch.Generator().manual_seed(config.seed)
    W, H = scene.frames[0].camera.width, scene.frames[0].camera.height
    for f in scene.frames:
        cam = f.camera.scaled(W, H) if (f.camera.width, f.camera.height) != (W, H) else f.camera
        rgb = torch.from_numpy(np.ascontiguousarray(f.rgb)).permute(2, 0, 1)[None].float() / 255.0
        img = F.interpolate(rgb, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        images.append((img[0].clamp(0, 1) * 255.0).round().to(torch.uint8))
        viewmats.append(torch.from_numpy(np.asarray(cam.viewmat, np.float64)))
        Ks.append(torch.from_numpy(np.asarray(cam.K, np.float64)))
        inst = None if f.instance_ids is None else np.asarray(f.instance_ids)
        counts.append([0 if inst is None else int((inst == o).sum()) for o in object_ids])
    rendered, seen = render_view_stats(g.means.cpu(), g.quats.cpu(), g.scales.cpu(), g.opacities.cpu(),
                                       torch.from_numpy(ids), torch.from_numpy(object_ids),
                                       [f.camera for f in scene.frames])
    view_sets = [_draw(torch.nonzero(row).flatten(), config.max_per_view, gen) for row in seen]
    M = max(1, max(int(v.numel()) for v in view_sets))
    view_index = torch.full((len(view_sets), M), -1, dtype=torch.long)
    for r, v in enumerate(view_sets):
        view_index[r, :v.numel()] = v
    return SceneFeatures(scene_id=scene.scene_id, latents=latents.contiguous(), means=means.contiguous(),
                         pooled=pooled, instance_queries=cpu(out.queries).float().contiguous(),
                         gaussian_ids=torch.from_numpy(ids), images=torch.stack(images),
                         viewmats=torch.stack(viewmats), intrinsics=torch.stack(Ks), width=int(W), height=int(H),
                         object_ids=torch.from_numpy(object_ids),
                         visible_pixels=torch.tensor(counts, dtype=torch.long).reshape(len(scene.frames), -1),
                         rendered_pixels=rendered,
                         view_index=view_index, seen=seen)


class SceneFeatureCache:
    """Scene features per scene id, computed on first use with ``model`` and kept in ``root``
    (``root=None``: memory only). :meth:`get` returns the in-memory copy after the first call."""

    def __init__(self, model: GenSplat, recon_root: Path, root: Path | None, config: SceneCacheConfig | None = None,
                 labels: bool = True):
        self.model = model
        self.labels = bool(labels)  # compute_scene_features(labels=...): False for inference on unlabelled scans
        self.recon_root = Path(recon_root)
        self.root = None if root is None else Path(root)
        self.config = config or SceneCacheConfig()
        self.fingerprint = model_fingerprint(model)
        self._memory: dict[str, SceneFeatures] = {}
        if not self.recon_root.is_dir():
            raise DataError("reconstruction root is not a directory (run `liftgs recon` first)", self.recon_root)

    def recon_file(self, scene_id: str) -> Path:
        return self.recon_root / scene_id / RECON_FILE

    def _file(self, scene_id: str) -> Path | None:
        return None if self.root is None else self.root / f"{scene_id}.safetensors"

    def source(self, scene_path: Path, scene_id: str) -> str:
        """What a cache file was made from: the scene folder, and the reconstruction with its
        size and modification time (scene ids repeat across datasets; a file made from other
        inputs is recomputed)."""
        recon = self.recon_file(scene_id)
        stat = recon.stat() if recon.is_file() else None
        return json.dumps({"scene": str(Path(scene_path).resolve()), "recon": str(recon.resolve()),
                           "recon_size": stat.st_size if stat else None,
                           "recon_mtime_ns": stat.st_mtime_ns if stat else None}, sort_keys=True)

    def _read(self, scene_path: Path, scene_id: str) -> SceneFeatures | None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        file = self._file(scene_id)
        if file is None or not file.is_file():
            return None
        try:
            with safe_open(str(file), "pt") as f:
                meta = f.metadata() or {}
            if (meta.get("format") != FORMAT or meta.get("version") != str(VERSION)
                    or meta.get("model") != self.fingerprint or meta.get("settings") != self.config.key()
                    or meta.get("source") != self.source(scene_path, scene_id)
                    or (self.labels and meta.get("labelled") != "1")):
                return None
            return SceneFeatures.from_tensors(scene_id, load_file(str(file)), int(meta["width"]), int(meta["height"]))
        except Exception:  # a damaged or foreign file is recomputed
            return None

    def _write(self, feats: SceneFeatures, source: str) -> None:
        from safetensors.torch import save_file

        file = self._file(feats.scene_id)
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": str(VERSION), "model": self.fingerprint, "settings": self.config.key(),
                "scene_id": feats.scene_id, "width": str(feats.width), "height": str(feats.height), "source": source,
                "labelled": "1" if self.labels else "0"}
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")  # one per process: concurrent writers never share it
        save_file({k: v.contiguous() for k, v in feats.tensors().items()}, str(tmp), metadata=meta)
        tmp.replace(file)  # atomic: a reader sees the old file or the whole new one

    def get(self, scene_path: Path, scene_id: str) -> SceneFeatures:
        key = str(Path(scene_path).resolve())
        if key in self._memory:
            return self._memory[key]
        feats = self._read(scene_path, scene_id)
        if feats is None:
            recon = self.recon_file(scene_id)
            if not recon.is_file():
                raise DataError(f"scene {scene_id} has no reconstruction (run `liftgs recon` on it first)", recon)
            feats = compute_scene_features(self.model, Path(scene_path), recon, self.config, self.labels)
            self._write(feats, self.source(scene_path, scene_id))
        self._memory[key] = feats
        return feats

    def load_all(self, scenes: Sequence[tuple[Path, str]], progress: bool = False) -> list[SceneFeatures]:
        """Features of every (scene directory, scene id), with a progress bar."""
        from tqdm.auto import tqdm

        missing = [(sid, self.recon_file(sid)) for _, sid in scenes if not self.recon_file(sid).is_file()]
        if missing:
            raise DataError(f"{len(missing)} of {len(scenes)} scenes have no reconstruction (e.g. {missing[0][0]}); "
                            f"run `liftgs recon` on them first", missing[0][1])
        return [self.get(p, sid) for p, sid in tqdm(scenes, desc="scene features", disable=not progress)]


__all__ = ["VISIBILITY_SOURCES", "SceneCacheConfig", "SceneFeatureCache", "SceneFeatures", "compute_scene_features",
           "gaussian_labels", "model_fingerprint", "render_view_stats", "rendered_object_pixels"]
