"""Render-supervised pre-training from 2D pseudo-labels (paper Sec 3.2, appendix A.1).

No 3D labels: the model predicts Gaussians and 3D masks from the point cloud and pseudo
queries (segment embeddings); masks, colours and features are rendered into the view and
supervised by the segments (Hungarian-matched cross-entropy + dice + soft token CE, eq. 3-5), the
image (L1 + SSIM, eq. 6) and the segment embeddings (contrastive, eq. 7). ``--losses``
reproduces the ablation of Table 4: ``ground`` / ``ground+rgb`` / ``ground+rgb+feat`` /
``rgb+feat``.

    liftgs pretrain --data DIR --labels DIR --preset tiny --out runs/pre --steps 2000
    torchrun --nproc_per_node 2 -m liftgs.cli pretrain ...   # data-parallel
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from liftgs.config import save_json_atomic, to_dict
from liftgs.recipes.common import build_model, loss_scalars, recipe_main, scene_paths, train_and_save
from liftgs.recipes.pretrain_data import PretrainDataset, PretrainSample
from liftgs.recipes.render_targets import render_view
from liftgs.runtime import fork_rng
from liftgs.train.batching import collate_groups, one_hot_tokens
from liftgs.train.distributed import DistInfo, init_distributed, normaliser
from liftgs.train.loop import RunConfig, SplitStep, TrainResult, seed_everything
from liftgs.train.optim import paper_optim

# paper Table 4: (grounding, photometric, feature) per loss set; "rgb+feat" is its row without
# the grounding loss (the decoder then gets no gradient, the encoder and Gaussian head do)
LOSS_SETS = {"ground": (True, False, False), "ground+rgb": (True, True, False),
             "ground+rgb+feat": (True, True, True), "rgb+feat": (False, True, True)}


@dataclass
class PretrainConfig(RunConfig):
    """Pre-training run. Presets (``--preset``) fill model size and recipe numbers."""

    draws_pictures: ClassVar[bool] = True  # --image-every: the probe view's masks and colours

    data: Path | None = None
    """dataset root of scene directories (``liftgs synth`` / ``liftgs convert`` output)"""
    labels: Path | None = None
    """pseudo-label cache written by ``liftgs pseudolabel``"""
    out: Path = Path("runs/pretrain")
    """run directory: config.json, log.jsonl, tensorboard/, checkpoints/, model/ (final weights)"""
    preset: Literal["tiny", "paper"] = "tiny"
    losses: Literal["ground", "ground+rgb", "ground+rgb+feat", "rgb+feat"] = "ground+rgb+feat"
    """loss set (paper Table 4): grounding only, + photometric, + feature, or photometric +
    feature without grounding"""
    split: str | None = "train"
    """scenes of this split of splits.json (all scenes when the root has no splits.json)"""
    image_size: int = 128
    """working render resolution (longer image side, pixels); paper: 512"""
    max_segments: int = 8
    """pseudo queries per sample (appendix A.1: up to 8)"""
    random_segment_count: bool = True
    """draw the number of pseudo queries uniformly from 1..max_segments (CPU recipe: zero-shot
    grounding asks one phrase at a time); off = min(max_segments, available), appendix A.1's
    "up to 8" and the ``paper`` preset"""
    min_segment_area: int = 1024
    """segments smaller than this many pixels at 512x512 are dropped (scaled to image_size)"""
    num_pixels: int = 4096
    """pixels sampled per view for the mask and feature losses; 0 = every pixel of the render
    (the ``paper`` preset: masks and features supervise the whole image, which gsplat renders
    on CUDA in one pass; on a CPU, sampling is what keeps a step affordable)"""
    views_per_scene: int = 2
    """views rendered per scene sample, each with its own pseudo queries, from one encoder pass
    (the paper uses 1; more views amortise the point encoder, the costliest part on a CPU)"""
    rgb_weight: float = 1.0
    feature_weight: float = 10.0
    """weight of the contrastive feature loss (eq. 7). CPU recipe: 10; appendix A (and the
    ``paper`` preset): 0.1. Zero-shot grounding ranks proposals by this feature field, and at
    0.1 it stayed near chance on the CPU budget (docs/training.md)"""
    feature_negatives: int = 256
    """segment embeddings of other scenes added to every pixel's alternatives in the feature
    loss. CPU recipe: 256; 0 = eq. 7 as written (the frame's own ~4 segments only) and the
    ``paper`` preset. Sharpens the field zero-shot ranking reads (docs/training.md)"""
    rank_weight: float = 2.0
    """weight of the proposal-ranking cross-entropy (CPU recipe: 2; 0 = off, as in the paper
    and the ``paper`` preset). Zero-shot grounding ranks proposals for one phrase; eq. 5 only
    normalises each proposal's row over tokens, and on the CPU budget the rows alone left the
    single-phrase ranking near chance (docs/training.md)"""

    def __post_init__(self) -> None:
        if self.losses not in LOSS_SETS:
            raise ValueError(f"losses must be one of {sorted(LOSS_SETS)}, got {self.losses!r}")
        for name in ("image_size", "max_segments", "views_per_scene"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_pixels < 0:
            raise ValueError(f"num_pixels must be >= 0 (0 = every pixel), got {self.num_pixels}")
        if self.feature_negatives < 0:
            raise ValueError(f"feature_negatives must be >= 0, got {self.feature_negatives}")
        if self.rgb_weight < 0 or self.feature_weight < 0:
            raise ValueError("loss weights must be >= 0")
        super().__post_init__()  # steps, batch and checkpoint numbers


PRESETS: dict[str, PretrainConfig] = {
    "tiny": PretrainConfig(),
    # appendix A: 76k steps, batch 32 over 32 GPUs, renders at 512x512
    "paper": PretrainConfig(preset="paper", steps=76000, batch_size=1, image_size=512,
                            num_pixels=0, random_segment_count=False, ckpt_every=2000, log_every=50,
                            optim=paper_optim(), views_per_scene=1, rank_weight=0.0,
                            feature_weight=0.1, feature_negatives=0),
}


def pretrain_loss(outputs, samples: list[PretrainSample], num_tokens: int, criterion,
                  use_rgb: bool, use_feat: bool, rgb_weight: float = 1.0,
                  feature_weight: float = 0.1, use_ground: bool = True) -> tuple[Tensor, dict[str, float]]:
    """Total loss of a batch: grounding (+ RGB, + feature), averaged over scenes."""
    from liftgs.losses import feature_contrastive_loss, photometric_loss

    B = len(samples)
    norm = normaliser(sum(s.target_masks.shape[0] for s in samples) / B)
    total = 0.0
    scalars: dict[str, float] = {}
    for (gauss, grounding), s in zip(outputs, samples):
        H, W = s.view.segments.shape
        dev = gauss.means.device
        view = render_view(gauss, grounding, s.view.viewmat.to(dev), s.view.K.to(dev), W, H,
                           s.pixels.to(dev), want_rgb=use_rgb, want_features=use_feat,
                           want_masks=use_ground)
        scene_loss = gauss.means.sum() * 0.0
        if use_ground:
            layers = [(probs, g.token_logits) for probs, g in
                      zip(view.mask_probs, [*grounding.aux, grounding])]
            K = s.target_masks.shape[0]
            tokens = one_hot_tokens(K, num_tokens).to(dev)
            ground, parts = criterion(layers, s.target_masks.to(dev), tokens, num_targets_normaliser=norm)
            scene_loss = scene_loss + ground
            _accumulate(scalars, {"ground": float(ground.detach()), **loss_scalars(parts)}, B)
        if use_rgb:
            rgb, rgb_parts = photometric_loss(view.rgb, s.view.rgb.to(dev))
            scene_loss = scene_loss + rgb_weight * rgb
            _accumulate(scalars, {"rgb": float(rgb.detach()), **loss_scalars(rgb_parts, "rgb_")}, B)
        if use_feat:
            negatives = None if s.negatives is None else s.negatives.to(dev)
            feat = feature_contrastive_loss(view.features, s.pixel_segments.to(dev),
                                            s.view.embeddings.to(dev), negatives=negatives)
            scene_loss = scene_loss + feature_weight * feat
            _accumulate(scalars, {"feat": float(feat.detach())}, B)
        total = total + scene_loss / B
    return total, scalars


def _accumulate(into: dict[str, float], values: dict[str, float], count: int) -> None:
    for k, v in values.items():
        into[k] = into.get(k, 0.0) + v / count


def make_step_fn(dataset: PretrainDataset, criterion, config: PretrainConfig, device: torch.device,
                 query_dim: int):
    """The recipe's ``step_fn(model, positions, step)`` for :func:`liftgs.train.loop.run_training`."""
    use_ground, use_rgb, use_feat = LOSS_SETS[config.losses]

    def load(positions: list[int]):  # CPU work: scenes, views, pixels (a DataLoader worker's)
        groups = [dataset.sample_views(p, config.views_per_scene) for p in positions]
        return groups, *collate_groups(groups, query_dim)

    def compute(model: nn.Module, data, step: int):
        groups, batch, query_scene = data
        samples = [s for group in groups for s in group]
        batch = batch.to(device)
        outputs = model(batch.points, batch.colors, batch.offsets, batch.queries, batch.query_mask,
                        query_scene=query_scene.to(device), lazy_masks=True)  # logits of seen Gaussians only
        return pretrain_loss(outputs, samples, batch.queries.shape[1], criterion, use_rgb,
                             use_feat, config.rgb_weight, config.feature_weight, use_ground)

    return SplitStep(load, compute)


PROBE_POSITION = 0  # the stream position whose view the pictures show


def make_images_fn(dataset: PretrainDataset, query_dim: int, device: torch.device):
    """Pictures of the probe view (the sample at :data:`PROBE_POSITION`) for the training log:
    its pseudo-label segments next to the rendered masks of the proposals the model ranks first
    for the same pseudo-queries (one colour per query), and the frame next to the rendered
    colours of the whole view."""
    from liftgs.train.pictures import mask_panel, side_by_side

    def images_fn(model: nn.Module, step: int) -> dict:
        s = dataset.sample(PROBE_POSITION)
        batch, query_scene = collate_groups([[s]], query_dim)
        batch = batch.to(device)
        gauss, grounding = model(batch.points, batch.colors, batch.offsets, batch.queries, batch.query_mask,
                                 query_scene=query_scene.to(device), lazy_masks=True)[0]
        H, W = s.view.segments.shape
        view = render_view(gauss, grounding, s.view.viewmat.to(device), s.view.K.to(device), W, H,
                           torch.arange(H * W, device=device), want_rgb=True, want_features=False)
        K = int(s.queries.shape[0])
        best = grounding.token_logits[:, :K].argmax(0)  # the proposal ranked first for query k
        rendered = view.mask_probs[-1][best].reshape(K, H, W).float().cpu().numpy()
        labels = (s.view.segments[None] == s.segment_ids[:, None, None]).numpy()
        frame = s.view.rgb.float().cpu().numpy()
        masks = side_by_side(mask_panel(labels, frame), mask_panel(rendered, frame))
        rgb = side_by_side(frame, view.rgb.float().clamp(0, 1).cpu().numpy())
        return {"pretrain/masks_pseudolabels_vs_rendered": masks,
                "pretrain/rgb_frame_vs_rendered": rgb}

    return images_fn


@fork_rng()  # the run seeds the global RNGs; its caller gets its own states back
def run_pretrain(config: PretrainConfig, info: DistInfo | None = None, on_step_end=None) -> TrainResult:
    """Build data, model and criterion from ``config`` and train; returns the loop's result."""
    from liftgs.losses import GroundingCriterion

    if config.data is None or config.labels is None:
        raise ValueError("pretrain needs --data DIR (scene directories) and --labels DIR (pseudo-labels)")
    info = info or init_distributed(config.device)
    dataset = PretrainDataset(scene_paths(config.data, config.split), Path(config.labels),
                              seed=config.seed, image_size=config.image_size,
                              max_segments=config.max_segments,
                              min_area_512=config.min_segment_area, num_pixels=config.num_pixels,
                              random_count=config.random_segment_count,
                              negatives=config.feature_negatives if LOSS_SETS[config.losses][2] else 0,
                              progress=info.is_main and config.progress)
    text_dim = dataset.embedding_dim
    seed_everything(config.seed)  # identical initial weights on every rank
    model = build_model(config.preset, text_dim).to(info.device)
    seed_everything(config.seed, info.rank)
    # the queries are vectors of the labels' encoder: fine-tuning, eval and ground load it
    model.config.text_encoder, model.config.recipe = dataset.text_encoder(), "pretrain"
    run_config = {"recipe": "pretrain", "pretrain": to_dict(config), "model": to_dict(model.config),
                  "text_encoder": model.config.text_encoder, "num_scenes": len(dataset),
                  "world_size": info.world_size}
    if info.is_main:  # data_stats: what `liftgs ground` compares a new cloud with (not a setting)
        from liftgs.clouds import data_ranges

        stats = data_ranges((e.points.numpy(), e.colors.numpy()) for e in dataset.scenes)
        save_json_atomic(Path(config.out) / "config.json", {**run_config, "data_stats": stats})
    step_fn = make_step_fn(dataset, GroundingCriterion(rank_weight=config.rank_weight), config, info.device,
                           text_dim)
    images_fn = make_images_fn(dataset, text_dim, info.device) if config.image_every else None
    return train_and_save(model, step_fn, config, run_config, info, on_step_end, "pretrain", images_fn)


def main(argv: list[str] | None = None) -> int:
    return recipe_main(argv, PretrainConfig, PRESETS, run_pretrain, "pretrain")
