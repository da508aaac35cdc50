"""GenSplat's frame selector GAFS: train its relevance scorer (``liftgs gensplat-frames``).

GenSplat summary, Key Designs 3: every view's image embedding v_i is fused by cross-attention
with the latents and positions of the Gaussians the view sees, and the relevance s_i is the
cosine between the fused v^_i and the text's query vector q^, "supervised by BCE"; "GAFS is
trained separately using L_bce" ("Loss & Training"). The scorer is
:class:`liftgs.models.gensplat.gafs.FrameScorer`; mode ``"views"`` is the "GAFS 2D views only"
ablation (Table 4, VII).

**Inputs.** A frozen stage-II GenSplat model (``--gensplat``: a ``liftgs gensplat-instance``
run, checkpoint or model folder) gives every scene's per-Gaussian latents L; the scene-feature
cache (:mod:`liftgs.recipes.gensplat_scenes`, ``--cache``) keeps them with the views' images at
``image_size``, their cameras, the Gaussians each view sees and how many pixels of every
object each view shows (on its instance map and in the rendered Gaussians). The texts are every
expression of every training scene (``scene.json`` ``expressions``: text and target ids) and,
with ``--qa``, the questions of a ScanQA-format file whose ``object_ids`` are non-empty (those
objects are the targets; only entries of ``--split`` or without a split, about training scenes).
Each distinct text is embedded once by the frozen text encoder.

**Labels and loss.** A view is relevant to a text when it shows at least ``min_pixels`` pixels
of the text's targets (:meth:`SceneFeatures.visible`, s^_i), "computed by rendering the target's
Gaussians" (``visibility="rendered"``: the reconstruction rendered from the view's camera, each
Gaussian carrying its object's indicator) or counted on the view's ground-truth instance map
(``visibility="instance"``). Texts whose targets no view shows are left out. A step takes
``batch_size`` texts (an epoch-wise seeded permutation of the stream positions, so a resumed
run is exact) and scores all views of each text's scene; the loss is the mean over the texts of L_bce
(:func:`liftgs.models.gensplat.gafs.frame_scorer_loss`, the mean over that scene's views). Logged
besides: ``top1`` (share of texts whose best-scored view is relevant) and ``auc`` (mean ROC AUC
over the texts that have relevant and irrelevant views; 0.5 when none has both).

The trained module is a :class:`FrameScorer` whose ``forward`` scores a batch of texts
(data-parallel training wraps it); ``OUT/model`` is a plain frame-scorer folder
(:meth:`FrameScorer.from_pretrained`). :func:`select_frames` is what evaluation and inference
call: uniform sampling or GAFS (scores ranked, redundancy suppressed, τ_d = 0.5, λ_t = λ_r = 1).

    liftgs gensplat-frames --data DIR --recon DIR --gensplat runs/gs2 --out runs/gafs
    liftgs gensplat-frames ... --mode views          # the 2D-views-only ablation
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from liftgs.config import save_json_atomic, to_dict
from liftgs.io.errors import DataError
from liftgs.models.gensplat.gafs import (FrameScorer, FrameScorerConfig, frame_scorer_loss, pad_view_sets,
                                        rank_and_select)
from liftgs.recipes.common import name_list, recipe_main, scene_paths, train_and_save
from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache, SceneFeatures
from liftgs.runtime import fork_rng
from liftgs.train.distributed import DistInfo, barrier, init_distributed
from liftgs.train.loop import RunConfig, TrainResult, seed_everything
from liftgs.train.optim import paper_optim
from liftgs.train.sampler import EpochSampler

FRAMES = "gensplat-frames"  # recipe (command) name
METHODS = ("uniform", "gafs")
TAU_D, LAMBDA_T, LAMBDA_R = 0.5, 1.0, 1.0  # GAFS redundancy suppression (summary, Key Designs 3)
_SCORER = FrameScorerConfig()


# ----------------------------------------------------------------------------------- config
@dataclass
class GenSplatFramesConfig(RunConfig):
    """GAFS's relevance scorer, trained with L_bce against the views that show the target."""

    data: Path | None = None
    """dataset root of scene directories (frames with instance maps, objects, expressions)"""
    recon: Path | None = None
    """reconstruction root: <recon>/<scene_id>/gaussians.ply (``liftgs recon`` output)"""
    gensplat: Path | None = None
    """stage-II GenSplat run, checkpoint or model folder (``liftgs gensplat-instance``); frozen"""
    qa: Path | None = None
    """optional ScanQA-format JSON: questions with non-empty object_ids are added as texts
    whose targets are those objects"""
    out: Path = Path("runs/gensplat-frames")
    """run directory: config.json, log.jsonl, tensorboard/, checkpoints/, model/ (the scorer)"""
    preset: Literal["tiny", "paper"] = "tiny"
    split: str | None = "train"
    """scenes of this split of splits.json (all scenes when the root has no splits.json)"""
    cache: Path | None = None
    """scene-feature cache folder (default OUT/scene_cache); reused while the stage-II model and
    the cache settings are the same"""
    mode: Literal["geometry", "views"] = "geometry"
    """"geometry": fuse the visible Gaussians (GAFS); "views": 2D views only (ablation)"""
    text_encoder: str = "minilm"
    """frozen text encoder name or path (its width is the scorer's text width)"""
    min_pixels: int = 16
    """a view is relevant when it shows at least this many target pixels"""
    visibility: Literal["instance", "rendered"] = "rendered"
    """how a view's target pixels are counted: "rendered": from rendering the target's Gaussians
    from the view's camera, as the GenSplat summary says; "instance": on the view's ground-truth
    instance map"""
    evidence: bool = True
    """mode geometry: add the geometric evidence term, gamma * max cos(semantic head(l_j), text) over each
    view's Gaussians (FrameScorerConfig.evidence; ours, not in the summary)"""
    max_per_view: int = 256
    """visible Gaussians kept per view in the scene-feature cache (seeded subsample)"""
    image_size: int = 64
    """views are cached and encoded at image_size x image_size"""
    batch_size: int = 8
    """texts per process per step"""
    steps: int = 600
    ckpt_every: int = 100
    latent_dim: int | None = None
    """width of the stage-II latents; None = the stage-II model's (another value is an error)"""
    dim: int = _SCORER.dim
    embed_dim: int = _SCORER.embed_dim
    num_heads: int = _SCORER.num_heads
    num_layers: int = _SCORER.num_layers
    ffn_dim: int = _SCORER.ffn_dim
    cnn_channels: tuple[int, ...] = _SCORER.cnn_channels
    init_scale: float = _SCORER.init_scale

    def __post_init__(self) -> None:
        if self.num_workers:
            raise ValueError("--num-workers: this recipe trains on scene features computed once and held in "
                             "memory, so a step loads nothing; leave it at 0")
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {self.min_pixels}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 (or None: the stage-II model's), got {self.latent_dim}")
        SceneCacheConfig(image_size=self.image_size, max_per_view=self.max_per_view)  # checks both
        self.scorer_config(text_dim=1, latent_dim=self.latent_dim or 1)  # checks the scorer's sizes
        super().__post_init__()

    def scorer_config(self, text_dim: int, latent_dim: int) -> FrameScorerConfig:
        """The :class:`FrameScorerConfig` of these settings (images encoded by the CNN)."""
        return FrameScorerConfig(text_dim=int(text_dim), latent_dim=int(latent_dim), dim=self.dim,
                                 embed_dim=self.embed_dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 ffn_dim=self.ffn_dim, mode=self.mode, view_dim=0, image_size=self.image_size,
                                 cnn_channels=tuple(self.cnn_channels), init_scale=self.init_scale,
                                 evidence=bool(self.evidence and self.mode == "geometry"))

    def cache_config(self) -> SceneCacheConfig:
        return SceneCacheConfig(image_size=self.image_size, max_per_view=self.max_per_view)


# The summary gives no schedule for GAFS ("trained separately using L_bce"): the paper preset
# keeps the loss, uses AdamW 1e-4 / wd 1e-4 (paper_optim), wider layers and larger views.
PRESETS: dict[str, GenSplatFramesConfig] = {
    "tiny": GenSplatFramesConfig(),
    "paper": GenSplatFramesConfig(preset="paper", steps=20000, batch_size=8, ckpt_every=1000, log_every=50,
                                  image_size=224, dim=256, embed_dim=256, num_heads=8, num_layers=2,
                                  ffn_dim=1024, cnn_channels=(32, 64, 128, 256), optim=paper_optim()),
}


# ------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class FrameSample:
    """One training text: its scene (index into the set's scenes), text (index into its texts),
    target object ids and where it comes from ("expression" or "qa")."""

    scene: int
    text: int
    targets: tuple[int, ...]
    source: str


@dataclass
class ScorerInputs:
    """What :class:`FrameScorer` reads for one text and one scene's views (CPU tensors)."""

    text: Tensor  # [T]
    images: Tensor  # [F, 3, S, S] float in [0, 1]
    latents: Tensor | None = None  # [F, M, C] (mode "geometry")
    positions: Tensor | None = None  # [F, M, 3] scene-centred
    gaussian_mask: Tensor | None = None  # [F, M] bool
    all_latents: Tensor | None = None  # [N, C] every Gaussian's latent (mode "geometry": the evidence term)
    seen: Tensor | None = None  # [F, N] bool the Gaussians each view sees


def scorer_inputs(feats: SceneFeatures, text_embedding: Tensor, mode: str = "geometry") -> ScorerInputs:
    """The scorer's inputs for one scene and one text embedding [T]: every view's image as float
    / 255 and, in mode ``"geometry"``, the views' visible Gaussians padded
    (:func:`liftgs.models.gensplat.gafs.pad_view_sets`, centred on :meth:`SceneFeatures.centre`)."""
    images = feats.images.float() / 255.0
    if mode != "geometry":
        return ScorerInputs(text=text_embedding, images=images)
    lat, pos, mask = pad_view_sets(feats.view_sets(), feats.latents.float(), feats.means.float(),
                                   feats.centre().float())
    return ScorerInputs(text=text_embedding, images=images, latents=lat, positions=pos, gaussian_mask=mask,
                        all_latents=feats.latents.float(), seen=feats.seen)


def score_views(scorer: FrameScorer, inputs: ScorerInputs) -> Tensor:
    """Logits [F] of every view (the base :meth:`FrameScorer.forward`, also on a training subclass)."""
    evidence = None
    if scorer.config.evidence:
        if inputs.all_latents is None or inputs.seen is None:
            raise ValueError("this scorer adds geometric evidence: its inputs need all_latents and seen "
                             "(scorer_inputs in mode 'geometry')")
        evidence = scorer.view_evidence(inputs.text, inputs.all_latents, inputs.seen)
    return FrameScorer.forward(scorer, inputs.text, inputs.images, latents=inputs.latents,
                               positions=inputs.positions, gaussian_mask=inputs.gaussian_mask,
                               evidence=evidence).logits


@dataclass
class FrameTrainingSet:
    """Scenes, distinct texts with their embeddings, samples and their per-view labels."""

    scenes: list[SceneFeatures]
    texts: list[str]
    text_embeddings: Tensor  # [U, T]
    samples: list[FrameSample]
    labels: list[np.ndarray]  # per sample: bool [F] of its scene
    mode: str = "geometry"
    seed: int = 0
    sampler: EpochSampler = field(init=False)

    def __post_init__(self) -> None:
        self.sampler = EpochSampler(len(self.samples), self.seed)

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, position: int) -> int:
        """The sample index at stream ``position``."""
        return self.sampler.item(position)

    def inputs(self, index: int) -> ScorerInputs:
        s = self.samples[index]
        return scorer_inputs(self.scenes[s.scene], self.text_embeddings[s.text], self.mode)


def scene_texts(scene_path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """(text, target ids) of every expression of a scene's ``scene.json`` with at least one target."""
    from liftgs.io.scene_dir import SCENE_JSON, read_scene_json

    doc = read_scene_json(scene_path)
    out = []
    for i, e in enumerate(doc["expressions"]):
        text = e.get("text") if isinstance(e, dict) else None
        targets = e.get("target_ids") if isinstance(e, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"expressions[{i}].text must be a non-empty string", Path(scene_path) / SCENE_JSON)
        if not isinstance(targets, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
            raise DataError(f"expressions[{i}].target_ids must be a list of integers", Path(scene_path) / SCENE_JSON)
        if targets:
            out.append((text, tuple(int(t) for t in targets)))
    return out


def qa_texts(path: Path, split: str | None, scene_ids: set[str]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(scene id, question, object ids) of the QA file's items about ``scene_ids`` with non-empty
    object ids, of ``split`` or without a split."""
    from liftgs.vqa.data import read_scanqa

    items = read_scanqa(path, require_answers=False)
    return [(q.scene_id, q.question, tuple(int(o) for o in q.object_ids)) for q in items
            if q.object_ids and q.scene_id in scene_ids and (not q.split or split is None or q.split == split)]


@torch.no_grad()
def embed_texts(text_encoder, texts: list[str], chunk: int = 256) -> Tensor:
    """[U, T] float32 CPU pooled embeddings of ``texts`` (no gradient)."""
    rows = [text_encoder.encode(texts[i:i + chunk]).pooled.detach().float().cpu() for i in range(0, len(texts), chunk)]
    return torch.cat(rows) if rows else torch.zeros((0, int(text_encoder.dim)))


def build_training_set(scenes: list[SceneFeatures], pending: list[tuple[int, str, tuple[int, ...], str]],
                       text_encoder, min_pixels: int, mode: str, seed: int,
                       visibility: str = "rendered") -> FrameTrainingSet:
    """Samples of ``pending`` (scene index, text, targets, source) whose targets at least one view
    shows (:meth:`SceneFeatures.visible` with ``source=visibility``), with the distinct texts
    embedded once."""
    samples, labels, texts, index = [], [], [], {}
    for scene, text, targets, source in pending:
        visible = np.asarray(scenes[scene].visible(list(targets), min_pixels, source=visibility), dtype=bool)
        if not visible.any():
            continue
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
        samples.append(FrameSample(scene=scene, text=index[text], targets=targets, source=source))
        labels.append(visible)
    return FrameTrainingSet(scenes=scenes, texts=texts, text_embeddings=embed_texts(text_encoder, texts),
                            samples=samples, labels=labels, mode=mode, seed=seed)


# ----------------------------------------------------------------------------------- model
class FrameScorerTraining(FrameScorer):
    """:class:`FrameScorer` whose ``forward`` scores a batch of texts, each over its scene's
    views (data-parallel training wraps ``forward``); it saves as a plain frame-scorer folder."""

    def forward(self, batch: list[ScorerInputs]) -> list[Tensor]:  # type: ignore[override]
        return [score_views(self, b) for b in batch]


def ranking_scalars(logits: list[Tensor], labels: list[np.ndarray]) -> dict[str, float]:
    """``top1``: share of texts whose best view is relevant; ``auc``: mean ROC AUC (ties count
    half) over the texts with relevant and irrelevant views, 0.5 when there are none."""
    top1, aucs = [], []
    for lg, y in zip(logits, labels):
        s = lg.detach().cpu().double().numpy()
        y = np.asarray(y, dtype=bool)
        top1.append(float(y[int(np.argmax(s))]))
        if y.any() and (~y).any():
            diff = s[y][:, None] - s[~y][None, :]
            aucs.append(float(((diff > 0) + 0.5 * (diff == 0)).mean()))
    return {"top1": float(np.mean(top1)) if top1 else 0.0, "auc": float(np.mean(aucs)) if aucs else 0.5}


def make_step_fn(data: FrameTrainingSet):
    """``step_fn(model, positions, step)`` for :func:`liftgs.train.loop.run_training`."""

    def step_fn(model, positions: list[int], step: int):
        index = [data.item(p) for p in positions]
        logits = model([data.inputs(i) for i in index])
        labels = [data.labels[i] for i in index]
        loss = torch.stack([frame_scorer_loss(lg, y) for lg, y in zip(logits, labels)]).mean()
        return loss, ranking_scalars(logits, labels)

    return step_fn


# ------------------------------------------------------------------------------- selection
def select_frames(scorer: FrameScorer | None, feats: SceneFeatures, text_embedding: Tensor, k: int,
                  method: str) -> np.ndarray:
    """Up to ``k`` view indices (int64) of a scene for one text.

    ``"uniform"``: :func:`liftgs.models.gensplat.frames.uniform_views` (the scorer is not used;
    may be None). ``"gafs"``: the scorer's logits (no gradient; the scorer's mode is its
    config's) ranked and thinned by :func:`liftgs.models.gensplat.gafs.rank_and_select`
    (τ_d = 0.5, λ_t = λ_r = 1), in selection order."""
    from liftgs.models.gensplat.frames import uniform_views

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if method == "uniform":
        return np.asarray(uniform_views(feats.num_views, int(k)), dtype=np.int64)
    if not isinstance(scorer, FrameScorer):
        raise ValueError(f"method 'gafs' needs a FrameScorer, got {type(scorer).__name__}")
    with torch.no_grad():
        logits = score_views(scorer, scorer_inputs(feats, text_embedding, scorer.config.mode))
    return np.asarray(rank_and_select(logits, feats.viewmats, k=int(k), tau_d=TAU_D, lambda_t=LAMBDA_T,
                                      lambda_r=LAMBDA_R), dtype=np.int64)


# ------------------------------------------------------------------------------------ run
def load_stage_two(path: Path):
    """The frozen stage-II GenSplat of a run / checkpoint / model folder, and its folder."""
    from liftgs.models import load_model
    from liftgs.models.gensplat import GenSplat
    from liftgs.train.checkpoint import resolve_model_dir

    model_dir = resolve_model_dir(path)
    model = load_model(model_dir)
    if not isinstance(model, GenSplat):
        raise ValueError(f"{model_dir}: --gensplat needs a GenSplat model (a `liftgs gensplat-instance` run), "
                         f"got a {type(model).__name__}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, model_dir


def _check_inputs(config: GenSplatFramesConfig) -> None:
    if config.gensplat is None:
        raise ValueError(f"{FRAMES} needs --gensplat RUN (a stage-II `liftgs gensplat-instance` run, checkpoint "
                         "or model folder)")
    if config.data is None or config.recon is None:
        raise ValueError(f"{FRAMES} needs --data DIR (scene directories) and --recon DIR (reconstructions)")
    if config.qa is not None and not Path(config.qa).is_file():
        raise DataError("the --qa file does not exist", config.qa)


@fork_rng()  # the run seeds the global RNGs; its caller gets its own states back
def run_gensplat_frames(config: GenSplatFramesConfig, info: DistInfo | None = None, text_encoder=None,
                        on_step_end=None) -> TrainResult:
    """Train GAFS's relevance scorer from ``config`` (module docstring)."""
    _check_inputs(config)
    paths = scene_paths(Path(config.data), config.split)
    if not paths:
        raise DataError(f"no scenes{'' if config.split is None else f' in split {config.split!r}'}", config.data)
    stage_two, model_dir = load_stage_two(Path(config.gensplat))
    latent_dim = int(stage_two.config.latent_dim)
    if config.latent_dim is not None and config.latent_dim != latent_dim:
        raise ValueError(f"{model_dir}: the stage-II model's latents are {latent_dim}-d but --latent-dim is "
                         f"{config.latent_dim}")
    if text_encoder is None:
        from liftgs.text import load_text_encoder

        text_encoder = load_text_encoder(config.text_encoder)
    text_dim = int(text_encoder.dim)
    scorer_config = config.scorer_config(text_dim, latent_dim)

    # every text, read before any feature is computed
    ids = [p.name for p in paths]
    pending = [(i, text, targets, "expression") for i, p in enumerate(paths) for text, targets in scene_texts(p)]
    num_expressions = len(pending)
    if config.qa is not None:
        where = {sid: i for i, sid in enumerate(ids)}
        pending += [(where[sid], q, targets, "qa") for sid, q, targets in qa_texts(Path(config.qa), config.split,
                                                                                    set(ids))]
    if not pending:
        raise DataError(f"no expressions with targets in {len(paths)} scenes ({name_list(ids)})"
                        + ("" if config.qa is None else " and no QA item of them with object_ids"), config.data)

    info = info or init_distributed(config.device)
    cache_root = Path(config.cache) if config.cache is not None else Path(config.out) / "scene_cache"
    cache = SceneFeatureCache(stage_two.to(info.device), Path(config.recon), cache_root, config.cache_config())
    pairs = list(zip(paths, ids))
    progress = info.is_main and config.progress
    if info.enabled:  # the main process writes the cache files, the others read them
        scenes = cache.load_all(pairs, progress=progress) if info.is_main else None
        barrier()
        scenes = scenes if scenes is not None else cache.load_all(pairs)
    else:
        scenes = cache.load_all(pairs, progress=progress)
    data = build_training_set(scenes, pending, text_encoder, config.min_pixels, config.mode, config.seed,
                              config.visibility)
    if len(data) == 0:
        raise DataError(f"none of the {len(pending)} texts has a target that a view shows with at least "
                        f"--min-pixels {config.min_pixels} pixels (--visibility {config.visibility})", config.data)

    seed_everything(config.seed)  # identical initial weights on every rank
    model = FrameScorerTraining(scorer_config, seed=config.seed).to(info.device)
    if scorer_config.evidence:
        model.set_semantic_head(stage_two.semantic_proj.weight)
    seed_everything(config.seed, info.rank)
    run_config = {"recipe": FRAMES, FRAMES: to_dict(config), "model": to_dict(scorer_config),
                  "gensplat_model": str(model_dir), "gensplat_fingerprint": cache.fingerprint,
                  "num_scenes": len(scenes), "scene_ids": ids, "num_samples": len(data),
                  "num_expressions": sum(s.source == "expression" for s in data.samples),
                  "num_qa": sum(s.source == "qa" for s in data.samples),
                  "num_texts_without_visible_target": len(pending) - len(data), "num_expressions_read": num_expressions,
                  "text_encoder": getattr(text_encoder, "name", config.text_encoder),
                  "world_size": info.world_size}
    if info.is_main:
        save_json_atomic(Path(config.out) / "config.json", run_config)
    return train_and_save(model, make_step_fn(data), config, run_config, info, on_step_end, FRAMES)


def main(argv: list[str] | None = None) -> int:
    return recipe_main(argv, GenSplatFramesConfig, PRESETS, run_gensplat_frames, FRAMES)


__all__ = ["FRAMES", "METHODS", "PRESETS", "FrameSample", "FrameScorerTraining", "FrameTrainingSet",
           "GenSplatFramesConfig", "ScorerInputs", "build_training_set", "embed_texts", "load_stage_two", "main",
           "make_step_fn", "qa_texts", "ranking_scalars", "run_gensplat_frames", "scene_texts", "score_views",
           "scorer_inputs", "select_frames"]
