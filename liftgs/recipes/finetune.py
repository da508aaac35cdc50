"""Fine-tuning with 3D labels (paper Sec 4): referring expressions and category queries.

The decoder's 3D masks are scored directly on the Gaussian centres (= input points):
mask_probs = sigmoid(mask_logits), matched and scored by the same Hungarian matcher and
criterion as pre-training (the 3D counterpart of the 2D grounding loss, Sec 3.2.1). The
per-pixel losses are pre-training only (Sec 3.2.2). Start from a pre-trained model (``--init``)
or from scratch; ``--data-fraction`` trains on a nested deterministic subset of the training
scenes for data-scaling curves (Fig. 7).

    liftgs finetune --data DIR --init runs/pre --out runs/ft --task both --data-fraction 0.25
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from liftgs.config import save_json_atomic, to_dict
from liftgs.models.liftgs.factors import stacked_factors
from liftgs.recipes.common import build_model, loss_scalars, recipe_main, scene_paths, train_and_save
from liftgs.recipes.finetune_data import FinetuneDataset, FinetuneSample
from liftgs.recipes.render_targets import grounding_layers
from liftgs.runtime import fork_rng
from liftgs.train.batching import collate_groups, positive_map
from liftgs.train.checkpoint import resolve_model_dir, unwrap_model
from liftgs.train.distributed import DistInfo, init_distributed, normaliser
from liftgs.train.loop import RunConfig, SplitStep, TrainResult, seed_everything
from liftgs.train.optim import paper_optim


@dataclass
class FinetuneConfig(RunConfig):
    """Fine-tuning run on scenes with GT instances and referring expressions."""

    data: Path | None = None
    """dataset root of scene directories with 3D labels"""
    out: Path = Path("runs/finetune")
    init: Path | None = None
    """pre-trained weights: a pretrain run dir, a checkpoint dir or a model dir; None = scratch"""
    preset: Literal["tiny", "paper"] = "tiny"
    """model size when training from scratch (ignored with --init: the checkpoint's config wins)"""
    task: Literal["refer", "instseg", "both"] = "both"
    """referring expressions, category-name queries (instance segmentation), or both mixed"""
    data_fraction: float = 1.0
    """train on this fraction of the training scenes (nested subsets across fractions)"""
    fraction_seed: int = 0
    split: str | None = "train"
    text_encoder: str | None = None
    """text encoder name, folder or HF-cache repo id; default: the one the --init model records
    (the pseudo-labels' encoder), MiniLM for a model from scratch"""
    min_instance_points: int = 20
    """instances with fewer points are neither targets nor queried categories"""
    negative_categories: int = 4
    """absent categories added to each instance-segmentation query set"""
    loss_points: int = 4096
    """points sampled per scene for the mask loss, shared by the scene's query sets (0 = all
    points); the mask logits are evaluated at these points only"""
    rank_weight: float = 2.0
    """weight of the proposal-ranking loss (the target's proposal must give the target's tokens
    more probability than every other proposal does; ``liftgs.losses.proposal_ranking_ce``).
    CPU recipe: 2, as in pre-training; 0 = off, as in the paper and the ``paper`` preset"""
    queries_per_scene: int = 16
    """query sets (expressions / the category set) of one scene per sample: the scene is
    encoded once and every set decoded from it, so the costly point encoder is amortised"""
    freeze_encoder: bool = False
    """keep the --init model's point encoder (sparse UNet) fixed, in inference mode, and train
    the decoder and mask head on its features (appendix A.2's frozen-feature comparison)"""

    def __post_init__(self) -> None:
        if not 0.0 < self.data_fraction <= 1.0:
            raise ValueError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if self.queries_per_scene < 1:
            raise ValueError(f"queries_per_scene must be >= 1, got {self.queries_per_scene}")
        if self.rank_weight < 0:
            raise ValueError(f"rank_weight must be >= 0, got {self.rank_weight}")
        if self.freeze_encoder and self.init is None:
            raise ValueError("--freeze-encoder needs --init (the pre-trained encoder to keep fixed)")
        if self.min_instance_points < 1 or self.negative_categories < 0 or self.loss_points < 0:
            raise ValueError("min_instance_points must be >= 1; negative_categories and "
                             "loss_points >= 0")
        super().__post_init__()  # steps, batch and checkpoint numbers


PRESETS: dict[str, FinetuneConfig] = {
    "tiny": FinetuneConfig(),
    "paper": FinetuneConfig(preset="paper", steps=50000, batch_size=1, ckpt_every=2000, log_every=50,
                            optim=paper_optim(), queries_per_scene=1, loss_points=0, rank_weight=0.0),
}


def finetune_loss(outputs, samples: list[FinetuneSample], num_tokens: int, criterion,
                  groups: list[int] | None = None) -> tuple[Tensor, dict[str, float]]:
    """3D grounding loss on Gaussian centres, averaged over the batch's scenes.

    ``groups`` [len(samples)]: the scene group of each sample (:func:`collate_groups`); the
    samples of a group that share their supervised points share one evaluation of the mask
    basis there (see :func:`_layer_logits`)."""
    B = len(samples)
    norm = normaliser(sum(s.target_masks.shape[0] for s in samples) / B)
    total: Tensor | float = 0.0
    scalars: dict[str, float] = {}
    bases: dict[int, tuple[Tensor | None, Tensor]] = {}
    for i, ((_, grounding), s) in enumerate(zip(outputs, samples)):
        dev = grounding.token_logits.device
        idx = None if s.loss_points is None else s.loss_points.to(dev)
        key = None if groups is None else groups[i]
        cached = bases.get(key)
        basis = cached[1] if cached is not None and _same_points(cached[0], s.loss_points) else None
        logits, basis = _layer_logits(grounding, idx, basis)
        if key is not None and cached is None:
            bases[key] = (s.loss_points, basis)
        layers = [(torch.sigmoid(lg), layer.token_logits) for lg, layer in zip(logits, grounding_layers(grounding))]
        tokens = positive_map(s.token_sets, num_tokens).to(dev)
        loss, parts = criterion(layers, s.target_masks.to(dev), tokens, num_targets_normaliser=norm)
        total = total + loss / B
        scalars[f"loss_{s.task}"] = scalars.get(f"loss_{s.task}", 0.0) + float(loss.detach()) / B
        for k, v in loss_scalars(parts).items():
            scalars[k] = scalars.get(k, 0.0) + v / B
    return total, scalars


def _same_points(a: Tensor | None, b: Tensor | None) -> bool:
    return a is b or (a is not None and b is not None and a.shape == b.shape and bool(torch.equal(a, b)))


def _layer_logits(grounding, idx: Tensor | None, basis: Tensor | None = None) -> tuple[list[Tensor], Tensor | None]:
    """Every decoder layer's mask logits [m, N] at the supervised points ``idx`` (None = all),
    and the point basis [N, D'] they were computed from (None for unfactored groundings).

    Factored groundings (``lazy_masks``) evaluate only those points, every layer from one
    product, and take ``basis`` (the same scene's basis at the same points, from an earlier
    query set) instead of computing it again: with a few thousand supervised points per scene
    and several query sets, this is most of the mask head's cost saved."""
    layers = grounding_layers(grounding)
    stacked = stacked_factors(layers)
    if stacked is None:
        return [layer.mask_logits if idx is None else layer.mask_logits.index_select(1, idx)
                for layer in layers], None
    if basis is None:
        basis = stacked.point_basis(idx)
    logits = torch.addmm(stacked.offsets, basis, stacked.weights.T).T  # [layers * m, N]
    return list(logits.chunk(len(layers))), basis


def make_step_fn(dataset: FinetuneDataset, criterion, device: torch.device, queries_per_scene: int = 1,
                 freeze_encoder: bool = False):
    lazy = dataset.loss_points > 0  # logits only at the sampled points (see _layer_logits)

    def load(positions: list[int]):  # CPU work (a DataLoader worker's with --num-workers)
        groups = [dataset.sample_group(p, queries_per_scene) for p in positions]
        return groups, *collate_groups(groups, dataset.dim)

    def compute(model: nn.Module, data, step: int):
        if freeze_encoder:  # a fixed encoder runs in inference mode (batch-norm statistics as trained)
            unwrap_model(model).encoder.eval()
        groups, batch, query_scene = data
        samples = [s for group in groups for s in group]
        batch = batch.to(device)
        outputs = model(batch.points, batch.colors, batch.offsets, batch.queries, batch.query_mask,
                        query_scene=query_scene.to(device), lazy_masks=lazy)
        return finetune_loss(outputs, samples, batch.queries.shape[1], criterion,
                             groups=query_scene.tolist())

    return SplitStep(load, compute)


def finetune_text_encoder(config: FinetuneConfig, device="cpu"):
    """The text encoder fine-tuning encodes its phrases with: ``--text-encoder``, else the one
    the ``--init`` model records, else MiniLM (:mod:`liftgs.models.provenance`)."""
    from liftgs.models.provenance import text_encoder_for

    model_dir = resolve_model_dir(config.init) if config.init is not None else None
    return text_encoder_for(model_dir, config.text_encoder, device=device)


def load_initial_model(config: FinetuneConfig, text_dim: int, encoder_name: str | None = None):
    """Pre-trained (``--init``) or freshly built model, checked against the text width."""
    from liftgs.models.liftgs import LiftGS

    if config.init is None:
        return build_model(config.preset, text_dim)
    model = LiftGS.from_pretrained(resolve_model_dir(config.init))
    if model.text_dim != text_dim:
        raise ValueError(f"{config.init}: the pre-trained model takes {model.text_dim}-d queries but "
                         f"the text encoder {encoder_name or config.text_encoder!r} gives {text_dim}-d "
                         "vectors; fine-tune with the encoder used in pre-training")
    return model


@fork_rng()  # the run seeds the global RNGs; its caller gets its own states back
def run_finetune(config: FinetuneConfig, info: DistInfo | None = None, text_encoder=None,
                 on_step_end=None) -> TrainResult:
    """Build data (text encoded once), model and criterion from ``config`` and train."""
    from liftgs.losses import GroundingCriterion

    if config.data is None:
        raise ValueError("finetune needs --data DIR (scene directories with 3D labels)")
    info = info or init_distributed(config.device)
    if text_encoder is None:
        text_encoder = finetune_text_encoder(config)
    encoder_name = getattr(text_encoder, "name", config.text_encoder)
    dataset = FinetuneDataset(scene_paths(config.data, config.split), text_encoder, seed=config.seed,
                              task=config.task, data_fraction=config.data_fraction,
                              fraction_seed=config.fraction_seed,
                              min_instance_points=config.min_instance_points,
                              negative_categories=config.negative_categories,
                              loss_points=config.loss_points, progress=config.progress and info.is_main)
    seed_everything(config.seed)  # identical initial weights on every rank
    model = load_initial_model(config, dataset.dim, encoder_name).to(info.device)
    seed_everything(config.seed, info.rank)
    model.config.text_encoder, model.config.recipe = encoder_name, "finetune"
    if config.freeze_encoder:
        model.encoder.requires_grad_(False)
    run_config = {"recipe": "finetune", "finetune": to_dict(config), "model": to_dict(model.config),
                  "num_scenes": len(dataset.scenes), "num_items": len(dataset),
                  "text_encoder": encoder_name, "world_size": info.world_size}
    if info.is_main:
        save_json_atomic(Path(config.out) / "config.json", run_config)
    step_fn = make_step_fn(dataset, GroundingCriterion(rank_weight=config.rank_weight), info.device,
                           config.queries_per_scene, config.freeze_encoder)
    return train_and_save(model, step_fn, config, run_config, info, on_step_end, "finetune")


def main(argv: list[str] | None = None) -> int:
    return recipe_main(argv, FinetuneConfig, PRESETS, run_finetune, "finetune")
