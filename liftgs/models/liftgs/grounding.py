"""Grounding phrases in a point cloud with a loaded LIFT-GS model: the ranking, mask and box
logic behind ``liftgs ground``, ``liftgs view`` and :meth:`LiftGS.ground`.

A phrase is grounded in the model's mode (:func:`resolve_mode`: zero-shot for a pre-trained
model, expressions after fine-tuning on referring expressions), masks are ranked, cut to their
main connected piece, thresholded and boxed; a cloud of more than ``max_points`` points runs
through the model as its voxel means, every point taking its voxel's masks. Nothing here
writes files or loads models.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from liftgs.models.provenance import check_text_width, run_configs

MIN_MASK_POINTS = 20  # a top mask smaller than this is no object at 5 cm: say so
MODES = ("auto", "zero-shot", "phrase", "expression")


@dataclass
class GroundOptions:
    """How one phrase is grounded (the options of ``liftgs ground`` that shape the result;
    :class:`liftgs.ground.GroundConfig` has the same fields)."""

    phrase: str
    mode: Literal["auto", "zero-shot", "phrase", "expression"] = "auto"
    target: str | None = None  # expression mode: the words naming the target (default: all)
    top_k: int = 3
    threshold: float = 0.5
    min_score: float = 0.0
    component_radius: float = 0.1
    max_points: int = 500_000
    scene: Path | str = "points"  # names the cloud in errors

    def __post_init__(self) -> None:
        if not self.phrase or not self.phrase.strip():
            raise ValueError("the phrase is empty: say what to find, e.g. \"the red chair\"")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_mask_options(self.top_k, self.threshold, self.component_radius)
        if self.max_points < 0:
            raise ValueError(f"max_points must be >= 0 (0 = always downsample), got {self.max_points}")
        if self.target is not None and self.target not in self.phrase:
            raise ValueError(f"target {self.target!r} does not occur in the phrase {self.phrase!r}")


@dataclass
class GroundOutput:
    masks: np.ndarray  # [k, P] bool
    scores: np.ndarray  # [k]
    point_mask_ids: np.ndarray  # [P] int32, -1 = none
    boxes: np.ndarray  # [k, 6]
    timings: dict[str, float]
    out: Path | None = None  # where the files were written
    warnings: list[str] = field(default_factory=list)  # one line each (also printed to stderr)
    model_points: int = 0  # points the model ran on (voxel means when downsampled)
    frames: np.ndarray | None = None  # gensplat: the frame indices the reasoner read
    frame_selection: str | None = None  # gensplat: "gafs" or "uniform"


class Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


def check_mask_options(top_k: int, threshold: float, component_radius: float) -> None:
    """The mask options ``liftgs ground`` and ``liftgs view`` share, checked at the door."""
    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    if component_radius < 0:
        raise ValueError(f"--component-radius must be >= 0 metres (0 = off), got {component_radius}")


def resolve_mode(config: GroundOptions, model_dir: Path | None, model=None) -> str:
    """``auto``: expression mode for models fine-tuned on referring expressions, zero-shot for a
    pre-training run's model, else phrase. The run's config.json decides (it knows the
    fine-tuning task); without one, the recipe the model's config records (fine-tuning ->
    expression, its default task being both)."""
    if config.mode != "auto":
        return config.mode
    for data in run_configs(model_dir) if model_dir is not None else ():
        if data.get("recipe") == "finetune":
            return "expression" if data.get("finetune", {}).get("task") in ("refer", "both") else "phrase"
        if data.get("recipe") == "pretrain":
            return "zero-shot"
    recipe = getattr(getattr(model, "config", None), "recipe", None)
    return {"pretrain": "zero-shot", "finetune": "expression"}.get(recipe, "phrase")


def training_ranges(model_dir: Path | None) -> tuple[dict, str]:
    """Statistics of the scenes the model was pre-trained on (``data_stats`` in its run's
    config.json, following a fine-tuning run's ``init`` once) and where they come from; the
    synthetic benchmark's (:data:`liftgs.clouds.SYNTHETIC_RANGES`) when no run records them."""
    from liftgs.clouds import SYNTHETIC_RANGES
    from liftgs.train.checkpoint import CheckpointError, resolve_model_dir

    for data in run_configs(model_dir) if model_dir is not None else ():
        if isinstance(data.get("data_stats"), dict):
            return data["data_stats"], "pre-training scenes"
        init = (data.get("finetune") or {}).get("init")
        if init:
            try:
                parent = resolve_model_dir(init)
            except (CheckpointError, FileNotFoundError):  # gone, or a name only the Hub could know
                continue
            for pre in run_configs(parent):
                if isinstance(pre.get("data_stats"), dict):
                    return pre["data_stats"], "pre-training scenes"
    return SYNTHETIC_RANGES, "synthetic benchmark defaults"


def ground_points(model, text_encoder, points: np.ndarray, colors: np.ndarray, config: GroundOptions,
                  mode: str, timer: Timer) -> GroundOutput:
    """Run the model on one cloud and turn its ranked masks into per-point ids and boxes."""
    import torch

    from liftgs.geometry import box_from_points
    from liftgs.models.liftgs.inference import ZERO_SHOT_RANKING, ground, ground_expressions

    with timer("model"), torch.no_grad():
        if mode in ("phrase", "zero-shot"):
            result = ground(model, text_encoder, points, colors, [config.phrase],
                            top_k=config.top_k, threshold=config.threshold,
                            component_radius=config.component_radius or None,
                            rank_by=ZERO_SHOT_RANKING if mode == "zero-shot" else "tokens")[0]
        else:
            span = None
            if config.target is not None:
                start = config.phrase.index(config.target)
                span = (start, start + len(config.target))
            result = ground_expressions(model, text_encoder, points, colors, [config.phrase], [span],
                                        top_k=config.top_k, threshold=config.threshold,
                            component_radius=config.component_radius or None)[0]
    with timer("masks"):
        masks = result.masks.cpu().numpy().astype(bool)
        scores = result.scores.cpu().numpy().astype(np.float64)
        keep = (scores >= config.min_score) & masks.any(axis=1)
        masks, scores = masks[keep], scores[keep]
        ids = np.full(len(points), -1, dtype=np.int32)
        for rank in range(len(masks) - 1, -1, -1):  # best mask written last wins
            ids[masks[rank]] = rank
        boxes = (np.stack([box_from_points(points[m]) for m in masks]) if len(masks)
                 else np.zeros((0, 6)))
    return GroundOutput(masks, scores, ids, boxes, timer.timings)


def expand_to_points(result: GroundOutput, inverse: np.ndarray, points: np.ndarray) -> GroundOutput:
    """Masks over voxel means -> masks over every input point [P, 3]: each point takes its
    voxel's value (``inverse`` [P]); boxes span the masks' input points."""
    from liftgs.geometry import box_from_points

    masks = result.masks[:, inverse]  # [k, P] bool
    boxes = (np.stack([box_from_points(points[m]) for m in masks]) if len(masks) else np.zeros((0, 6)))
    return GroundOutput(masks, result.scores, result.point_mask_ids[inverse], boxes, result.timings)


def model_input(points: np.ndarray, colors: np.ndarray, voxel_size: float, config: GroundOptions,
                timer: Timer, say=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The cloud the model runs on: (points, colours, None), or for more than
    ``config.max_points`` points their voxel means and each point's voxel [P]
    (:func:`liftgs.clouds.voxel_downsample`). Refuses a grid no int64 key can index."""
    from liftgs.clouds import check_grid, voxel_downsample
    from liftgs.io.errors import DataError

    try:
        check_grid(points, voxel_size)
    except ValueError as err:
        raise DataError(str(err), config.scene) from None
    if len(points) <= config.max_points:
        return points, colors, None
    with timer("downsample"):
        means, mean_colors, inverse = voxel_downsample(points, colors, voxel_size)
    message = (f"{len(points):,} points (--max-points {config.max_points:,}): grounding their "
               f"{len(means):,} voxel means ({voxel_size} m); every point takes its voxel's masks")
    if say is None:
        print(f"liftgs ground: {message}", file=sys.stderr)
    else:
        say(message)
    return means, mean_colors, inverse


def ground_cloud(model, text_encoder, points: np.ndarray, colors: np.ndarray, config: GroundOptions,
                 model_dir: Path | None, timer: Timer | None = None, notes: list[str] | None = None,
                 warn=None, say=None) -> tuple[GroundOutput, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Ground ``config.phrase`` in a loaded cloud [P, 3] with a loaded model; writes nothing.

    Checks the text width, picks the cloud the model runs on (:func:`model_input`), warns
    about a cloud far from the model's training scenes and about a top mask under
    :data:`MIN_MASK_POINTS` points, grounds in the model's mode (:func:`resolve_mode`) and
    maps the masks back to every input point. ``notes`` are warnings gathered before (e.g.
    while loading); ``warn(lines)`` reports the warnings as they arise (default: one
    ``liftgs ground: warning:`` line each on stderr), and all of them are returned in
    ``GroundOutput.warnings``; ``say`` reports the downsampling (default: stderr).
    ``model_dir`` (None: unknown) locates the run whose config picks the mode and the
    training-data ranges.
    Returns the result and, for a downsampled cloud, (voxel means, their colours, their mask
    ids) to render, else None."""
    from liftgs.clouds import cloud_stats, distribution_warnings

    timer = timer or Timer()
    notes = list(notes or [])
    warn = warn or print_warnings
    check_text_width(model, text_encoder, model_dir or "given")
    seen, seen_colors, inverse = model_input(points, colors, model.voxel_size, config, timer, say)
    far = distribution_warnings(cloud_stats(seen, seen_colors), *training_ranges(model_dir))
    notes += [f"{w}; --max-points 0 grounds its voxel means" if w.startswith("density") else w for w in far]
    warn(notes)
    result = ground_points(model, text_encoder, seen, seen_colors, config, resolve_mode(config, model_dir, model), timer)
    if len(result.masks) and int(result.masks[0].sum()) < MIN_MASK_POINTS:
        unit = "voxel means" if inverse is not None else "points"
        notes.append(f"top mask: {int(result.masks[0].sum())} {unit} (of {len(seen):,}), expected >= "
                     f"{MIN_MASK_POINTS}: no object-sized region found for {config.phrase!r}")
        warn(notes[-1:])
    view = None
    if inverse is not None:
        view = (seen, seen_colors, result.point_mask_ids)
        result = expand_to_points(result, inverse, points)
    result.warnings, result.model_points = notes, len(seen)
    return result, view


def print_warnings(lines: list[str]) -> None:
    for line in lines:
        print(f"liftgs ground: warning: {line}", file=sys.stderr)


def ground_phrases(model, text_encoder, points, colors, phrases: list[str] | str,
                   model_dir: Path | None = None, **options) -> list[GroundOutput]:
    """Ground each of ``phrases`` in the cloud ``points`` [P, 3] / ``colors`` [P, 3] (0..1) with
    the same logic as ``liftgs ground``: one :class:`GroundOutput` per phrase (masks [k, P],
    scores [k], boxes [k, 6] as min xyz / max xyz, per-point mask ids, warnings). ``options``
    are :class:`GroundOptions` fields (``mode``, ``top_k``, ``threshold``, ...). Prints
    nothing: warnings are returned in each result."""
    points = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=np.float32)
    colors = np.asarray(colors.detach().cpu() if hasattr(colors, "detach") else colors, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise ValueError(f"points and colors must both be [P, 3], got {list(points.shape)} and "
                         f"{list(colors.shape)}")
    if len(points) == 0:
        raise ValueError("the point cloud is empty")
    if not np.isfinite(points).all():
        raise ValueError("points hold NaN or infinite coordinates")
    if colors.size and (colors.min() < 0 or colors.max() > 1):
        raise ValueError("colors must lie in [0, 1] (divide 8-bit colours by 255)")
    phrases = [phrases] if isinstance(phrases, str) else list(phrases)
    configs = [GroundOptions(phrase=p, **options) for p in phrases]  # every phrase checked first
    out = []
    for config in configs:
        said: list[str] = []
        result, _ = ground_cloud(model, text_encoder, points, colors, config, model_dir,
                                 warn=lambda lines: None, say=said.append)
        result.warnings = said + result.warnings
        out.append(result)
    return out
