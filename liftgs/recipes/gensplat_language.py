"""GenSplat stage III: free-form text through a ``<SEG>`` token (GenSplat summary, Key Designs 1
(III) and 2, "Loss & Training").

A reasoner reads a few views of the scene and a text. For a referring expression it replies
``<SEG>``; the projected state of that token, t^_seg, joins the stage-II instance queries O_ins
in the referring decoder, which predicts the referred Gaussians. For a question it replies with
the answer. Both are trained together by L_align = L_text + λ_m L_mask, λ_m = 0.1:

* L_text: the reasoner's answer loss. The CPU reasoner (:class:`CompactReasoner`, a stand-in
  for the paper's LLaVA-Video) answers by classification over the training answers, whose
  vocabulary holds ``<SEG>`` as the referring reply, so L_text is a cross-entropy.
* L_mask: :func:`deep_referring_loss` (5 BCE + 5 dice + 2 exists-BCE, every decoder layer) on
  the referred mask over the Gaussians against 3D labels (each Gaussian carries the object id
  of its nearest labelled point, :mod:`liftgs.recipes.gensplat_scenes`), mean over the
  batch's referring samples.

The stage-II model (encoder, pooling, instance decoder) is frozen: its outputs are computed
once per scene and cached (:class:`SceneFeatureCache`). What trains is the reasoner's own parts
(view CNN, context projection, learned tokens, heads; MiniLM stays frozen unless
``--train-top-layers``) and the referring decoder. The summary says the referring decoder
"reuses the instance decoder architecture"; its shared parts (token and position encoders,
layers, mask head) start from the trained instance decoder's weights
(:meth:`ReferringDecoder.init_from_instance_decoder`, ``--no-init-decoder`` starts them fresh).

**Views while training.** At inference GAFS picks the views (``liftgs gensplat-frames``); while
training, each sample gets ``num_views`` views of which a uniformly drawn number j in
[0, min(num_views, |visible|)] show the target (the rest are drawn from the other frames), so
the reasoner sees every mix from "no view shows it" to "all do" and learns to use what the
views show without depending on a particular selector. Questions whose objects are known
(``object_ids`` of the QA file) are treated the same way; other questions get random views.

    liftgs gensplat-language --data DIR --recon DIR --gensplat runs/gs2 --qa qa.json --out runs/gs3
    torchrun --nproc_per_node 2 -m liftgs.cli gensplat-language ...   # data-parallel
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from liftgs.config import ConfigError, save_json_atomic, to_dict, update_config
from liftgs.files import atomic_dir
from liftgs.io.errors import DataError
from liftgs.models.gensplat import GenSplat
from liftgs.models.gensplat.compact import CompactConfig, CompactReasoner
from liftgs.models.gensplat.reasoner import SEG_TOKEN, alignment_loss
from liftgs.models.gensplat.referring import ReferringConfig, ReferringDecoder, deep_referring_loss
from liftgs.recipes.common import name_list, recipe_main, scene_paths, train_and_save
from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache, SceneFeatures, model_fingerprint
from liftgs.runtime import fork_rng
from liftgs.train.checkpoint import resolve_model_dir
from liftgs.train.distributed import DistInfo, init_distributed
from liftgs.train.loop import RunConfig, TrainResult, seed_everything
from liftgs.train.sampler import sample_rng

LANGUAGE = "gensplat-language"  # recipe (command) name
FORMAT = "liftgs-gensplat-language"  # language.json "format"
SETTINGS_NAME = "language.json"
REFER_REPLY = SEG_TOKEN  # the reasoner's reply to a referring expression
REFER_PROMPT = "Please segment {text}."  # how an expression is put to the reasoner
QA_PROMPT = "{text}"  # how a question is put to the reasoner


def refer_prompt(text: str) -> str:
    return REFER_PROMPT.format(text=text.strip())


def qa_prompt(text: str) -> str:
    return QA_PROMPT.format(text=text.strip())


# ----------------------------------------------------------------------------------- config
@dataclass
class GenSplatLanguageConfig(RunConfig):
    """Stage III: compact reasoner + referring decoder over a frozen stage-II model."""

    data: Path | None = None
    """dataset root of scene directories (expressions, labelled points, frames with instance maps)"""
    recon: Path | None = None
    """reconstruction root: <recon>/<scene_id>/gaussians.ply (``liftgs recon`` output)"""
    gensplat: Path | None = None
    """stage-II run, checkpoint or model folder (``liftgs gensplat-instance``); kept frozen"""
    qa: Path | None = None
    """optional question file (ScanQA layout, e.g. ``liftgs synth-qa``): its training-split
    questions of the training scenes are trained on too"""
    out: Path = Path("runs/gensplat-language")
    """run directory: config.json, log.jsonl, tensorboard/, checkpoints/, model/ (the bundle)"""
    preset: Literal["tiny", "paper"] = "tiny"
    split: str | None = "train"
    """scenes of this split of splits.json (all scenes when the root has no splits.json)"""
    cache: Path | None = None
    """scene-feature cache folder (default <out>/scene_cache); shareable between runs of one stage-II model"""
    num_views: int = 4
    """views given to the reasoner per sample (N*; the paper's 32 is for videos of hundreds of frames)"""
    qa_fraction: float = 0.3
    """share of samples drawn from the questions (when --qa is given)"""
    mask_weight: float = 0.1
    """λ_m of L_align = L_text + λ_m L_mask (summary: 0.1)"""
    min_pixels: int = 16
    """a frame shows an object when its instance map holds at least this many of its pixels"""
    backbone: str = "minilm"
    """reasoner language backbone (a BERT-style encoder: name, folder or cached repo id)"""
    train_top_layers: int = 0
    """backbone layers trained from the top (0: frozen)"""
    view_context: bool = True
    """add each view's context (mean seen latent, camera pose) to its token"""
    init_decoder: bool = True
    """start the referring decoder's shared parts from the stage-II instance decoder's weights"""
    view_prior: bool = True
    """the referring decoder also reads what the selected frames saw: per Gaussian the share of them
    seeing it, and that share times its semantic match with the text (ReferringConfig.view_prior;
    ours, not in the summary; --no-view-prior is the summary's decoder)"""
    text_encoder: str = "minilm"
    """frozen text encoder of the view prior's text match (the stage-II semantic head's text space)"""
    image_size: int = 64
    max_per_view: int = 256
    label_radius: float = 0.08
    batch_size: int = 8
    steps: int = 1500
    ckpt_every: int = 250
    keep_last: int = 1

    def __post_init__(self) -> None:
        if self.num_workers:
            raise ValueError("--num-workers: this recipe trains on scene features computed once and held in "
                             "memory, so a step loads nothing; leave it at 0")
        for name in ("num_views", "min_pixels", "image_size", "max_per_view"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.qa_fraction <= 1.0:
            raise ValueError(f"qa_fraction must be in [0, 1], got {self.qa_fraction}")
        if self.mask_weight < 0:
            raise ValueError(f"mask_weight must be >= 0, got {self.mask_weight}")
        if self.train_top_layers < 0:
            raise ValueError(f"train_top_layers must be >= 0, got {self.train_top_layers}")
        super().__post_init__()

    def cache_config(self) -> SceneCacheConfig:
        return SceneCacheConfig(image_size=self.image_size, max_per_view=self.max_per_view,
                                label_radius=self.label_radius, seed=0)


LANGUAGE_PRESETS: dict[str, GenSplatLanguageConfig] = {
    "tiny": GenSplatLanguageConfig(),
    "paper": GenSplatLanguageConfig(preset="paper", num_views=32, steps=20000, batch_size=16, ckpt_every=1000,
                                    log_every=50, train_top_layers=2),
}


# ------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class LanguageItem:
    """One training text: ``kind`` "refer" (``answer`` = ``<SEG>``) or "qa"."""

    scene: int
    text: str
    answer: str
    targets: tuple[int, ...]
    kind: str
    phrase: str = ""  # the expression (or question) itself, without the prompt


@dataclass
class LanguageSample:
    feats: SceneFeatures
    views: np.ndarray  # [V] frame indices
    text: str
    answer: str
    targets: tuple[int, ...]
    kind: str
    phrase: str = ""


def training_views(rng: np.random.Generator, visible: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct frame indices (all frames when there are fewer): j ~ U{0..min(k, |visible|)}
    of them showing the target, the rest drawn from the other frames (then from any frame when
    those run out), in ascending order."""
    n = visible.shape[0]
    if k >= n:
        return np.arange(n, dtype=np.int64)
    shown, hidden = np.flatnonzero(visible), np.flatnonzero(~visible)
    j = int(rng.integers(0, min(k, shown.size) + 1))
    pick = list(rng.choice(shown, size=j, replace=False)) if j else []
    rest = k - j
    take = min(rest, hidden.size)
    if take:
        pick += list(rng.choice(hidden, size=take, replace=False))
    if len(pick) < k:
        left = np.setdiff1d(np.arange(n), np.asarray(pick, np.int64))
        pick += list(rng.choice(left, size=k - len(pick), replace=False))
    return np.sort(np.asarray(pick, np.int64))


def read_expressions(scene_dirs: Sequence[Path]) -> list[tuple[int, str, tuple[int, ...]]]:
    """(scene index, text, target ids) of every expression with targets in ``scene_dirs``."""
    from liftgs.io.scene_dir import read_scene_json

    out = []
    for si, path in enumerate(scene_dirs):
        doc = read_scene_json(path)
        for i, e in enumerate(doc.get("expressions") or []):
            if not isinstance(e, dict) or not isinstance(e.get("text"), str) or not e["text"].strip():
                raise DataError(f"expressions[{i}].text must be a non-empty string", Path(path) / "scene.json")
            ids = e.get("target_ids") or []
            if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
                raise DataError(f"expressions[{i}].target_ids must be a list of object ids", Path(path) / "scene.json")
            if ids:
                out.append((si, e["text"], tuple(int(t) for t in ids)))
    return out


class LanguageDataset:
    """Referring expressions (+ questions) of the training scenes -> :class:`LanguageSample` by
    stream position; every draw comes from the (seed, position) generator, so a resumed run
    sees the same samples."""

    def __init__(self, scene_dirs: Sequence[Path], features: Sequence[SceneFeatures], seed: int, num_views: int,
                 min_pixels: int, qa_items: Sequence | None = None, qa_fraction: float = 0.0):
        self.scene_dirs = list(scene_dirs)
        self.features = list(features)
        self.seed, self.num_views, self.min_pixels = int(seed), int(num_views), int(min_pixels)
        index = {f.scene_id: i for i, f in enumerate(self.features)}
        self.refer = [LanguageItem(si, refer_prompt(text), REFER_REPLY, targets, "refer", text.strip())
                      for si, text, targets in read_expressions(self.scene_dirs)]
        self.qa = [LanguageItem(index[q.scene_id], qa_prompt(q.question), q.answers[0],
                                tuple(int(o) for o in (q.object_ids or [])), "qa", q.question.strip())
                   for q in (qa_items or []) if q.scene_id in index and q.answers]
        if not self.refer:
            raise DataError("no referring expressions with targets in the training scenes",
                            self.scene_dirs[0] if self.scene_dirs else Path("."))
        self.qa_fraction = float(qa_fraction) if self.qa else 0.0
        self.answers = [REFER_REPLY] + sorted({item.answer for item in self.qa} - {REFER_REPLY})

    def sample(self, position: int) -> LanguageSample:
        rng = sample_rng(self.seed, position)
        pool = self.qa if (self.qa and rng.random() < self.qa_fraction) else self.refer
        item = pool[int(rng.integers(0, len(pool)))]
        feats = self.features[item.scene]
        visible = (feats.visible(item.targets, self.min_pixels) if item.targets
                   else np.zeros(feats.num_views, dtype=bool))
        views = training_views(rng, visible, self.num_views)
        return LanguageSample(feats, views, item.text, item.answer, item.targets, item.kind, item.phrase)


# ------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class LanguageSettings:
    """Inference settings stored with the bundle (language.json)."""

    num_views: int = 4
    min_pixels: int = 16
    view_context: bool = True
    image_size: int = 64
    max_per_view: int = 256
    label_radius: float = 0.08
    stage2_fingerprint: str = ""
    prior_text_encoder: str = ""  # text encoder of the view prior's text match ("" = no prior)


def gaussian_targets(feats: SceneFeatures, targets: Sequence[int]) -> Tensor:
    """[1, N] float: 1 on the Gaussians labelled with one of ``targets``."""
    ids = torch.as_tensor(list(targets), dtype=torch.long)
    return torch.isin(feats.gaussian_ids, ids).float()[None]


class GenSplatLanguage(nn.Module):
    """The trainable part of stage III: reasoner + referring decoder (the frozen stage-II model
    rides along, outside the module's parameters, so it is saved with the bundle)."""

    def __init__(self, reasoner: CompactReasoner, referring: ReferringDecoder, stage2: GenSplat,
                 settings: LanguageSettings, mask_weight: float = 0.1):
        super().__init__()
        self.reasoner = reasoner
        self.referring = referring
        self.settings = settings
        self.mask_weight = float(mask_weight)
        self.__dict__["stage2"] = stage2  # not a submodule: frozen, not trained, not in checkpoints
        self.__dict__["text_encoder"] = None  # the view prior's frozen text encoder, loaded on first use
        self._phrase_vectors: dict[str, Tensor] = {}

    def view_inputs(self, feats: SceneFeatures, views: np.ndarray) -> tuple[Tensor, Tensor | None]:
        idx = torch.as_tensor(np.asarray(views, np.int64))
        images = feats.images.index_select(0, idx).float() / 255.0
        ctx = feats.view_context(idx.tolist()) if self.settings.view_context else None
        return images, ctx

    def phrase_vector(self, phrase: str) -> Tensor:
        """The frozen text encoder's embedding [T] of ``phrase`` (remembered per phrase)."""
        vec = self._phrase_vectors.get(phrase)
        if vec is None:
            if self.text_encoder is None:
                from liftgs.text import load_text_encoder

                self.__dict__["text_encoder"] = load_text_encoder(self.settings.prior_text_encoder)
            vec = self.text_encoder.encode([phrase]).pooled[0].detach().float().cpu()
            self._phrase_vectors[phrase] = vec
        return vec

    def view_prior(self, feats: SceneFeatures, views: np.ndarray, phrase: str) -> Tensor | None:
        """The referring decoder's view prior [N, 2] for the frames ``views`` and the expression
        ``phrase`` (:data:`~liftgs.models.gensplat.referring.PRIOR_CHANNELS`: the share of the
        frames seeing each Gaussian, and that share times the cosine between the phrase and the
        Gaussian's CLIP-aligned embedding), or None when the decoder has no prior."""
        from liftgs.models.gensplat.gafs import semantic_cosine

        if not self.referring.config.view_prior:
            return None
        share = feats.view_prior(np.asarray(views, np.int64).tolist())
        cos = semantic_cosine(feats.latents.float(), self.stage2.semantic_proj.weight.detach().float().cpu(),
                              self.phrase_vector(phrase))
        return torch.stack([share, share * cos], dim=1).to(self.reasoner.device)

    def forward(self, samples: list[LanguageSample]) -> tuple[Tensor, dict[str, float]]:
        device = self.reasoner.device
        inputs = [self.view_inputs(s.feats, s.views) for s in samples]
        ctx = [c for _, c in inputs] if self.settings.view_context else None
        out = self.reasoner([v for v, _ in inputs], [s.text for s in samples], [s.answer for s in samples],
                            view_context=ctx)
        mask_losses, scalars = [], {}
        for b, s in enumerate(samples):
            if s.kind != "refer":
                continue
            f = s.feats
            pred = self.referring(f.latents.to(device), f.means.to(device), _pooled_to(f, device),
                                  f.instance_queries.to(device), out.segs[b],
                                  self.view_prior(f, s.views, s.phrase))
            target = gaussian_targets(f, s.targets).to(device)
            loss, parts = deep_referring_loss(pred, target, torch.ones(1, dtype=torch.bool, device=device))
            mask_losses.append(loss)
            with torch.no_grad():
                hit = pred.mask_logits[0] > 0
                inter = (hit & (target[0] > 0.5)).sum().item()
                union = (hit | (target[0] > 0.5)).sum().item()
            scalars.setdefault("_iou", []).append(inter / max(union, 1))
        mask_loss = torch.stack(mask_losses).mean() if mask_losses else None
        loss = alignment_loss(out.text_loss, mask_loss, self.mask_weight)
        with torch.no_grad():
            target = torch.tensor([self.reasoner.answer_index[s.answer] for s in samples], device=device)
            acc = float((out.answer_logits.argmax(1) == target).float().mean())
        result = {"loss": float(loss.detach()), "text": float(out.text_loss.detach()), "answer_acc": acc}
        if mask_loss is not None:
            result["mask"] = float(mask_loss.detach())
            result["train_iou"] = float(np.mean(scalars["_iou"]))
        return loss, result

    # ------------------------------------------------------------------ bundle
    def save_pretrained(self, path: str | Path) -> Path:
        """The bundle folder: ``language.json`` (format, settings, referring config),
        ``reasoner/`` (:meth:`CompactReasoner.save_pretrained`), ``referring.safetensors`` and
        ``gensplat/`` (the stage-II model folder), written into a staged folder moved into place."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path) as tmp:
            self.reasoner.save_pretrained(tmp / "reasoner")
            self.stage2.save_pretrained(tmp / "gensplat")
            save_file({k: v.detach().contiguous().cpu() for k, v in self.referring.state_dict().items()},
                      str(tmp / "referring.safetensors"), metadata={"format": "pt"})
            save_json_atomic(tmp / SETTINGS_NAME, {"format": FORMAT, "settings": to_dict(self.settings),
                                                   "referring": to_dict(self.referring.config),
                                                   "mask_weight": self.mask_weight})
        return path


    def load_pretrained_state(self, path: str | Path) -> None:
        """Load the trained weights of a folder written by :meth:`save_pretrained` into this
        model (checkpoint resume): the reasoner's saved parts and the referring decoder. Every
        parameter outside the frozen backbone must be there with its shape; else
        :class:`~liftgs.train.checkpoint.CheckpointError`."""
        from safetensors.torch import load_file

        from liftgs.models.gensplat.compact import BACKBONE_PREFIX, WEIGHTS_NAME
        from liftgs.train.checkpoint import CheckpointError

        path = Path(path)
        files = {"reasoner.": path / "reasoner" / WEIGHTS_NAME, "referring.": path / "referring.safetensors"}
        weights: dict[str, Tensor] = {}
        for prefix, file in files.items():
            if not file.is_file():
                raise CheckpointError(f"{file}: missing; expected a `liftgs {LANGUAGE}` model folder")
            weights.update({prefix + k: v for k, v in load_file(str(file)).items()})
        own = self.state_dict()
        frozen = "reasoner." + BACKBONE_PREFIX
        missing = sorted(k for k in own if k not in weights and not k.startswith(frozen))
        unexpected = sorted(set(weights) - set(own))
        wrong = [k for k, v in weights.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
        if missing or unexpected or wrong:
            raise CheckpointError(f"{path}: weights do not match the model (missing {missing[:4]}, unexpected "
                                  f"{unexpected[:4]}, other shapes {wrong[:4]})")
        self.load_state_dict(weights, strict=False)


def _pooled_to(feats: SceneFeatures, device: torch.device):
    from liftgs.models.gensplat import PooledTokens

    p = feats.pooled
    if p.tokens.device == device:
        return p
    return PooledTokens(tokens=p.tokens.to(device), xyz=p.xyz.to(device), assignment=p.assignment.to(device),
                        valid=p.valid.to(device))


def load_language_model(path: str | Path, map_location: str | torch.device = "cpu") -> GenSplatLanguage:
    """A bundle written by :meth:`GenSplatLanguage.save_pretrained` (a run folder or its
    ``model/``). One-line errors naming the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "model" / SETTINGS_NAME).is_file():
        path = path / "model"
    settings_file = path / SETTINGS_NAME
    if not settings_file.is_file():
        raise FileNotFoundError(f"{settings_file}: missing; expected a `liftgs {LANGUAGE}` run or its model/ folder")
    try:
        doc = json.loads(settings_file.read_text())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"field 'format' must be {FORMAT!r}")
        settings = update_config(LanguageSettings(), doc.get("settings", {}), str(settings_file), "settings.")
        ref_config = update_config(ReferringConfig(), doc.get("referring", {}), str(settings_file), "referring.")
        mask_weight = float(doc.get("mask_weight", 0.1))
    except (ValueError, TypeError, KeyError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ValueError(f"{settings_file}: not a valid stage-III settings file ({' '.join(str(err).split())})") \
            from err
    stage2 = GenSplat.from_pretrained(path / "gensplat", map_location=map_location)
    reasoner = CompactReasoner.from_pretrained(path / "reasoner", map_location=map_location)
    referring = ReferringDecoder(ref_config)
    weights = path / "referring.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing; expected a `liftgs {LANGUAGE}` model folder")
    try:
        referring.load_state_dict(load_file(str(weights), device="cpu"))
    except RuntimeError as err:
        raise ValueError(f"{weights}: weights do not match {settings_file} ({' '.join(str(err).split())[:300]})") \
            from err
    model = GenSplatLanguage(reasoner, referring.to(map_location), stage2, settings, mask_weight)
    return model.eval()


# ------------------------------------------------------------------------------------- runs
def load_stage_two(path: Path) -> GenSplat:
    from liftgs.models import load_model

    model_dir = resolve_model_dir(path)
    model = load_model(model_dir)
    if not isinstance(model, GenSplat):
        raise ValueError(f"{model_dir}: --gensplat needs a GenSplat model (a `liftgs gensplat-instance` run), "
                         f"got a {type(model).__name__}")
    return model.eval().requires_grad_(False)


def read_training_questions(path: Path, scene_ids: set[str], split: str | None) -> list:
    from liftgs.vqa.data import read_scanqa

    items = read_scanqa(path)
    keep = [q for q in items if q.scene_id in scene_ids and (split is None or q.split in (None, "", split))]
    return keep


def make_step_fn(dataset: LanguageDataset):
    def step_fn(model: nn.Module, positions: list[int], step: int):
        return model([dataset.sample(p) for p in positions])

    return step_fn


@fork_rng()
def run_gensplat_language(config: GenSplatLanguageConfig, info: DistInfo | None = None,
                          on_step_end=None) -> TrainResult:
    """Stage III: scene features from the frozen stage-II model, then reasoner + referring
    decoder trained with L_align."""
    if config.data is None or config.recon is None or config.gensplat is None:
        raise ValueError(f"{LANGUAGE} needs --data DIR (scene directories), --recon DIR (reconstructions) and "
                         "--gensplat RUN (the stage-II model)")
    if config.qa is not None and not Path(config.qa).is_file():
        raise DataError("question file not found", Path(config.qa))
    info = info or init_distributed(config.device)
    stage2 = load_stage_two(Path(config.gensplat))
    prior_encoder = None
    if config.view_prior:
        from liftgs.text import load_text_encoder

        prior_encoder = load_text_encoder(config.text_encoder)
        if int(prior_encoder.dim) != int(stage2.text_dim):
            raise ValueError(f"--text-encoder {config.text_encoder!r} gives {prior_encoder.dim}-d vectors but the "
                             f"stage-II semantic head is {stage2.text_dim}-d; use the text encoder stage II was "
                             "trained with (or --no-view-prior)")
    dirs = scene_paths(Path(config.data), config.split)
    if not dirs:
        raise DataError(f"no scenes (split {config.split!r})", Path(config.data))
    from liftgs.io.scene_dir import read_scene_json

    ids = [read_scene_json(p)["scene_id"] for p in dirs]
    read_expressions(dirs)  # every expression is checked before any work
    qa_items = read_training_questions(Path(config.qa), set(ids), "train") if config.qa is not None else None
    if config.qa is not None and not qa_items:
        raise DataError(f"no training-split question about the {len(ids)} training scenes "
                        f"({name_list(ids)})", Path(config.qa))
    cache = SceneFeatureCache(stage2, Path(config.recon), Path(config.cache or Path(config.out) / "scene_cache"),
                              config.cache_config())
    features = cache.load_all(list(zip(dirs, ids)), progress=info.is_main and config.progress)
    dataset = LanguageDataset(dirs, features, config.seed, config.num_views, config.min_pixels, qa_items,
                              config.qa_fraction)
    seed_everything(config.seed)
    C = int(stage2.config.latent_dim)
    reasoner = CompactReasoner(dataset.answers, CompactConfig(
        seg_dim=int(stage2.config.hidden_dim), backbone=config.backbone, train_top_layers=config.train_top_layers,
        image_size=config.image_size, max_views=max(config.num_views, 1),
        context_dim=(C + 9) if config.view_context else 0), seed=config.seed)
    with fork_rng(config.seed):
        referring = ReferringDecoder(ReferringConfig.from_gensplat(stage2.config, seg_dim=reasoner.seg_dim,
                                                                   view_prior=config.view_prior))
    if config.init_decoder:
        referring.init_from_instance_decoder(stage2.decoder)
    settings = LanguageSettings(num_views=config.num_views, min_pixels=config.min_pixels,
                                view_context=config.view_context, image_size=config.image_size,
                                max_per_view=config.max_per_view, label_radius=config.label_radius,
                                stage2_fingerprint=cache.fingerprint,
                                prior_text_encoder=config.text_encoder if config.view_prior else "")
    model = GenSplatLanguage(reasoner, referring, stage2, settings, config.mask_weight).to(info.device)
    if config.view_prior:
        model.__dict__["text_encoder"] = prior_encoder
    seed_everything(config.seed, info.rank)
    run_config = {"recipe": LANGUAGE, LANGUAGE: to_dict(config), "settings": to_dict(settings),
                  "stage2_model": str(resolve_model_dir(config.gensplat)), "num_scenes": len(dirs), "scene_ids": ids,
                  "num_expressions": len(dataset.refer), "num_questions": len(dataset.qa),
                  "answers": len(dataset.answers), "world_size": info.world_size}
    if info.is_main:
        save_json_atomic(Path(config.out) / "config.json", run_config)
    return train_and_save(model, make_step_fn(dataset), config, run_config, info, on_step_end, LANGUAGE)


def main(argv: list[str] | None = None) -> int:
    return recipe_main(argv, GenSplatLanguageConfig, LANGUAGE_PRESETS, run_gensplat_language, LANGUAGE)


__all__ = ["GenSplatLanguage", "GenSplatLanguageConfig", "LanguageDataset", "LanguageSettings", "LANGUAGE_PRESETS",
           "gaussian_targets", "load_language_model", "load_stage_two", "qa_prompt", "refer_prompt",
           "run_gensplat_language", "training_views"]
