"""Time of one pre-training step of ``liftgs pretrain`` with its defaults, and where it goes.

Goal: a step of the pre-training recipe with its default settings (``PretrainConfig()``: the
``tiny`` preset, its batch of scenes, views per scene, render size, pseudo queries, sampled
pixels and loss weights; printed at the start) costs <= 0.5 s per rendered view
(``batch_size x views_per_scene`` views per step) on a 2-core CPU.

Every number of the step comes from ``PretrainConfig()``; only the run's length, its folder and
its bookkeeping (no TensorBoard, no progress bar, no checkpoint before the end) are set here.
The run is ``run_pretrain`` itself, on ``--rooms`` ``standard`` synthetic rooms pseudo-labelled
by the synthetic teacher (``--text-encoder``, MiniLM by default, like the demo), so the stream
of scenes, views and query counts is the one training sees. The time of a step is the loop's
own ``step_time`` (sampling, forward, losses, backward, clipping, AdamW, schedule; logging and
checkpoints excluded); the first ``--warmup`` steps are left out. Rows:

* ``full step``: one run per loss set of paper Table 4 (``--losses``), the default set first;
* ``breakdown``: another run of the default loss set with a timer around each stage (sample
  assembly, encoder, decoder, Gaussian head, render, matching, backward, optimiser; the rest is
  the other loss terms and glue). Its timers add a little overhead of their own.

Threads: ``liftgs.runtime.configure_runtime(threads=--threads)``.

    python benchmarks/train_step.py [--repeats 7] [--threads 2] [--text-encoder minilm]
    python benchmarks/train_step.py --rooms 3 --repeats 1 --warmup 1 --losses ground --text-encoder hash-384  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from liftgs.runtime import configure_runtime


def build_data(root: Path, rooms: int, encoder_name: str, seed: int) -> list[int]:
    """``rooms`` standard rooms and their synthetic pseudo-labels on disk; returns each room's
    number of points (for the header)."""
    from liftgs.io.scene_dir import write_scene
    from liftgs.synth import STANDARD, generate_room
    from liftgs.teachers.store import PseudoLabelStore, frame_key
    from liftgs.teachers.synthetic import SyntheticTeacher
    from liftgs.text import load_text_encoder

    store = PseudoLabelStore(root / "labels")
    teacher = SyntheticTeacher(load_text_encoder(encoder_name))
    points = []
    for i in range(rooms):
        room = generate_room(STANDARD, seed=seed + i, scene_id=f"room{i}")
        for j, (fr, lab) in enumerate(zip(room.frames, teacher.label_frames(room.frames, room))):
            store.put(room.scene_id, frame_key(fr, j), lab)
        write_scene(room, root / "data")
        points.append(room.num_points)
    return points


def step_times(root: Path, losses: str, steps: int, name: str) -> list[float]:
    """``step_time`` of every step of a default pre-training run with ``losses``."""
    from liftgs.recipes.pretrain import PretrainConfig, run_pretrain

    config = replace(PretrainConfig(), data=root / "data", labels=root / "labels", out=root / "runs" / name,
                     losses=losses, steps=steps, ckpt_every=steps, log_every=steps, tensorboard=False,
                     progress=False, device="cpu")
    times: list[float] = []
    run_pretrain(config, on_step_end=lambda step, scalars: times.append(scalars["step_time"]))
    return times


@contextlib.contextmanager
def stage_timers(totals: dict[str, float]):
    """Time the stages of a step by wrapping the methods that run them (class attributes, so
    the run's own objects are timed); restored on exit."""
    from liftgs.losses.matcher import HungarianMatcher
    from liftgs.models.liftgs.model import LiftGS
    from liftgs.modules.gaussian_head import GaussianHead
    from liftgs.recipes import pretrain
    from liftgs.recipes.pretrain_data import PretrainDataset

    targets = [(PretrainDataset, "sample_views", "data (sample assembly)"),
               (LiftGS, "encode", "encoder (sparse UNet)"), (LiftGS, "decode", "decoder"),
               (GaussianHead, "forward", "Gaussian head"), (pretrain, "render_view", "render (weights + composite)"),
               (HungarianMatcher, "__call__", "matching (no grad)"), (torch.Tensor, "backward", "backward"),
               (torch.optim.AdamW, "step", "optimiser (AdamW)")]

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t0

        return wrapper

    missing = object()  # inherited (e.g. AdamW.step from Adam): delete the wrapper afterwards
    saved = [(owner, attr, vars(owner).get(attr, missing)) for owner, attr, _ in targets]
    try:
        for owner, attr, label in targets:
            setattr(owner, attr, timed(getattr(owner, attr), label))
        yield
    finally:
        for owner, attr, original in saved:
            if original is missing:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def main() -> None:
    from liftgs.recipes.pretrain import LOSS_SETS, PretrainConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps per run")
    ap.add_argument("--rooms", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-encoder", default="minilm")
    ap.add_argument("--losses", default=",".join(LOSS_SETS), help="loss sets of Table 4, comma-separated")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first room")
    args = ap.parse_args()
    configure_runtime(threads=args.threads)

    default = PretrainConfig()
    views = default.batch_size * default.views_per_scene
    steps = args.warmup + args.repeats
    loss_sets = sorted(args.losses.split(","), key=lambda s: s != default.losses)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        points = build_data(root, args.rooms, args.text_encoder, args.seed)
        print(f"recipe defaults (PretrainConfig()): preset {default.preset}, batch {default.batch_size} scenes x "
              f"{default.views_per_scene} views = {views} views/step, {default.image_size}px views, up to "
              f"{default.max_segments} pseudo queries (random count: {default.random_segment_count}), "
              f"{default.num_pixels} sampled pixels, {default.feature_negatives} feature negatives, "
              f"weights rgb {default.rgb_weight} / feature {default.feature_weight} / rank {default.rank_weight}")
        print(f"{args.rooms} standard rooms ({min(points)}-{max(points)} points), text encoder {args.text_encoder}; "
              f"{torch.get_num_threads()} thread(s); median of {args.repeats} steps after {args.warmup} warm-up\n")
        print("| loss set (Table 4) | step median (s) | min (s) | per view (s) | goal |")
        print("| --- | ---: | ---: | ---: | --- |")
        for losses in loss_sets:
            t = step_times(root, losses, steps, losses)[args.warmup:]
            med = statistics.median(t)
            ok = "met" if med / views <= 0.5 else "missed"
            default_mark = " (default)" if losses == default.losses else ""
            print(f"| {losses}{default_mark} | {med:.3f} | {min(t):.3f} | {med / views:.3f} | "
                  f"<= 0.5 s per view: {ok} |", flush=True)
        if args.no_breakdown:
            return
        per_step: list[dict[str, float]] = []
        totals: dict[str, float] = {}

        def record(step, scalars):
            per_step.append({**totals, "step": scalars["step_time"]})
            totals.clear()

        from liftgs.recipes.pretrain import run_pretrain

        config = replace(default, data=root / "data", labels=root / "labels", out=root / "runs" / "breakdown",
                         steps=steps, ckpt_every=steps, log_every=steps, tensorboard=False, progress=False,
                         device="cpu")
        with stage_timers(totals):
            run_pretrain(config, on_step_end=record)
        timed = per_step[args.warmup:]
        med = {k: statistics.median(s.get(k, 0.0) for s in timed) for k in timed[0] if k != "step"}
        step = statistics.median(s["step"] for s in timed)
        med["other loss terms and glue"] = max(0.0, step - sum(med.values()))
        print(f"\nbreakdown of a {default.losses} step (median step {step:.3f} s, medians per stage)\n")
        print("| stage | median (ms) | share |")
        print("| --- | ---: | ---: |")
        for k, v in med.items():
            print(f"| {k} | {v * 1000:.1f} | {100 * v / step:.0f}% |")


if __name__ == "__main__":
    main()
