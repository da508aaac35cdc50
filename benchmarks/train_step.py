"""Time of one pre-training step and where it goes.

Target (issue 5): ``tiny`` preset, one ``standard`` synthetic room (10-30k points), one 128x128
view, 8 pseudo queries: a full training step (forward, render, losses, backward, optimiser)
<= 0.5 s median on this 2-core CPU. The room is pseudo-labelled by the synthetic teacher
(MiniLM caption embeddings, 384-d, like the demo). Two measurements:

* ``full step``: the recipe's own ``step_fn`` + backward + clip + AdamW, exactly as
  ``liftgs pretrain`` runs it (one per loss set of paper Table 4);
* ``breakdown``: the same work with a timer around each stage (encoder, decoder, Gaussian
  head, render, matching, other loss terms, backward, optimiser; data = sample assembly).

    python benchmarks/train_step.py [--repeats 7] [--threads 2] [--text-encoder minilm]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_data(root: Path, encoder_name: str, seed: int):
    """One standard room + its synthetic pseudo-labels on disk, and a 128x128 dataset. A second
    room's labels fill the feature loss's bank of other-scene negatives (the recipe's
    ``feature_negatives``); only the first room is trained on."""
    from liftgs.io.scene_dir import write_scene
    from liftgs.synth import STANDARD, generate_room
    from liftgs.teachers.store import PseudoLabelStore, frame_key
    from liftgs.teachers.synthetic import SyntheticTeacher
    from liftgs.text import load_text_encoder
    from liftgs.recipes.pretrain import PretrainConfig
    from liftgs.recipes.pretrain_data import PretrainDataset

    store = PseudoLabelStore(root / "labels")
    teacher = SyntheticTeacher(load_text_encoder(encoder_name))
    rooms = [generate_room(STANDARD, seed=seed, scene_id="bench"),
             generate_room(STANDARD, seed=seed + 1000, scene_id="other")]
    for room in rooms:
        for i, (fr, lab) in enumerate(zip(room.frames, teacher.label_frames(room.frames, room))):
            store.put(room.scene_id, frame_key(fr, i), lab)
        write_scene(room, root / "data")
    ds = PretrainDataset([root / "data" / r.scene_id for r in rooms], root / "labels", seed=0, image_size=128,
                         max_segments=8, num_pixels=4096, random_count=False,  # the target: 8 queries
                         negatives=PretrainConfig().feature_negatives)
    samples = {p: ds.sample(p) for p in range(200)}
    counts = {p: s.queries.shape[0] for p, s in samples.items() if s.scene_id == "bench"}
    k = max(counts.values())  # 8 when some view shows 8 segments above the area threshold
    return rooms[0], ds, [p for p, c in counts.items() if c == k]


class Timer:
    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self._run: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self._run[name] = self._run.get(name, 0.0) + seconds

    def commit(self) -> None:
        for k, v in self._run.items():
            self.times.setdefault(k, []).append(v)
        self._run = {}


class TimedMatcher:
    """Wraps the criterion's matcher to time the Hungarian matching separately."""

    def __init__(self, matcher, timer: Timer):
        self.matcher, self.timer = matcher, timer

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        out = self.matcher(*args, **kwargs)
        self.timer.add("matching (no grad)", time.perf_counter() - t)
        return out


def instrumented_step(model, optimizer, ds, position: int, criterion, timer: Timer) -> None:
    """The recipe's step with a timer per stage (mirrors LiftGS.forward and pretrain_loss)."""
    from liftgs.train.batching import collate_points
    from liftgs.recipes.pretrain import pretrain_loss

    def lap(name, t0):
        t1 = time.perf_counter()
        timer.add(name, t1 - t0)
        return t1

    t = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    s = ds.sample(position)
    b = collate_points([s.points], [s.colors], [s.queries], ds.embedding_dim)
    t = lap("data", t)
    enc = model.encode(b.points, b.colors, b.offsets, lazy_masks=True)
    t = lap("encoder (sparse UNet)", t)
    groundings = model.decode(enc, b.queries, b.query_mask, lazy_masks=True)
    t = lap("decoder", t)
    g = model.gaussian_head(enc.point_features, b.points, b.colors)
    t = lap("Gaussian head", t)
    from liftgs.train import pretrain as pre

    real_render = pre.render_view

    def timed_render(*a, **k):
        t0 = time.perf_counter()
        out = real_render(*a, **k)
        timer.add("render (weights + composite)", time.perf_counter() - t0)
        return out

    pre.render_view = timed_render
    try:
        loss, _ = pretrain_loss([(g, groundings[0])], [s], b.queries.shape[1], criterion, True, True)
    finally:
        pre.render_view = real_render
    t1 = time.perf_counter()
    inner = timer._run.get("render (weights + composite)", 0) + timer._run.get("matching (no grad)", 0)
    timer.add("losses (mask CE/dice/token/L1+SSIM/feature)", t1 - t - inner + 0.0)
    t = t1
    loss.backward()
    t = lap("backward", t)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    lap("optimiser (clip + AdamW)", t)
    timer.commit()


def full_step_times(model, ds, positions, losses: str, repeats: int) -> list[float]:
    """Median-able times of the recipe's own step (step_fn + backward + clip + AdamW)."""
    from liftgs.losses import GroundingCriterion
    from liftgs.train.optim import OptimConfig, build_optimizer
    from liftgs.recipes.pretrain import PretrainConfig, make_step_fn

    cfg = PretrainConfig(losses=losses, image_size=128, num_pixels=4096, views_per_scene=1)  # the target: one view
    step_fn = make_step_fn(ds, GroundingCriterion(rank_weight=cfg.rank_weight), cfg, torch.device("cpu"),
                           ds.embedding_dim)
    optimizer, _ = build_optimizer(model, OptimConfig(), 1000)
    out = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = step_fn(model, [positions[i % len(positions)]], i)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if i:  # the first step warms caches up
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-encoder", default="minilm")
    ap.add_argument("--seed", type=int, default=2, help="room seed (2: views with 8 segments)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from liftgs.losses import GroundingCriterion
    from liftgs.train.loop import seed_everything
    from liftgs.train.optim import OptimConfig, build_optimizer
    from liftgs.recipes.pretrain import PretrainConfig, build_model

    with tempfile.TemporaryDirectory() as tmp:
        scene, ds, positions = build_data(Path(tmp), args.text_encoder, args.seed)
        seed_everything(0)
        model = build_model("tiny", ds.embedding_dim).train()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"room: {scene.num_points} points, {len(scene.frames)} frames; view 128x128, "
              f"{ds.sample(positions[0]).queries.shape[0]} queries, 4096 sampled pixels; tiny preset ({n_params / 1e6:.2f} M parameters); "
              f"{args.threads} thread(s); median of {args.repeats}\n")
        print("| loss set (Table 4) | full step median (s) | min (s) | target |")
        print("| --- | ---: | ---: | --- |")
        for losses in ("ground", "ground+rgb", "ground+rgb+feat"):
            t = full_step_times(model, ds, positions, losses, args.repeats)
            ok = "met" if statistics.median(t) <= 0.5 else "missed"
            print(f"| {losses} | {statistics.median(t):.3f} | {min(t):.3f} | <= 0.5 s: {ok} |")

        timer = Timer()
        criterion = GroundingCriterion(rank_weight=PretrainConfig().rank_weight)  # the recipe's terms
        criterion.matcher = TimedMatcher(criterion.matcher, timer)
        optimizer, _ = build_optimizer(model, OptimConfig(), 1000)
        for i in range(args.repeats + 1):
            instrumented_step(model, optimizer, ds, positions[i % len(positions)], criterion, timer)
        med = {k: statistics.median(v[1:]) for k, v in timer.times.items()}
        total = sum(med.values())
        print(f"\nbreakdown of a ground+rgb+feat step (sum of medians {total:.3f} s)\n")
        print("| stage | median (ms) | share |")
        print("| --- | ---: | ---: |")
        for k, v in med.items():
            print(f"| {k} | {v * 1000:.1f} | {100 * v / total:.0f}% |")


if __name__ == "__main__":
    main()
