"""Latency of grounding one phrase (``liftgs ground``) after the model is loaded.

Target (issue 6): a 50k-point cloud with the ``tiny`` preset answers in <= 1 s on a 2-core CPU
(the paper reports ~1 s on a GPU against 60 s for ConceptFusion). The cloud is a synthetic room's
fused point cloud upsampled with jitter to the wanted size, or random points with --random.
Prints median milliseconds per stage over several runs.

    python benchmarks/inference.py [--points 50000 20000] [--repeats 5] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def room_cloud(n: int, seed: int = 0, random: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if random:
        return (rng.uniform([0, 0, 0], [5, 4, 2.5], (n, 3)).astype(np.float32),
                rng.uniform(0, 1, (n, 3)).astype(np.float32))
    from liftgs.synth.config import PRESETS
    from liftgs.synth.generate import generate_room

    scene = generate_room(PRESETS["standard"], seed)
    idx = rng.integers(0, scene.num_points, n)
    pts = scene.points[idx] + rng.normal(0, 0.01, (n, 3)).astype(np.float32)
    return pts.astype(np.float32), scene.colors[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[20000, 50000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model dir (default: untrained tiny)")
    ap.add_argument("--random", action="store_true", help="random points instead of a synthetic room")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from liftgs.ground import GroundConfig, Timer, ground_points
    from liftgs.models.liftgs import LiftGS, ModelConfig, build_liftgs
    from liftgs.text import load_text_encoder

    t0 = time.perf_counter()
    if args.checkpoint is None:
        torch.manual_seed(0)
        model = build_liftgs(ModelConfig.tiny(text_dim=384)).eval()
    else:
        model = LiftGS.from_pretrained(args.checkpoint).eval()
    encoder = load_text_encoder("minilm")
    print(f"model + text encoder loaded in {time.perf_counter() - t0:.1f} s (not counted below)\n")

    phrases = ["the red chair next to the table", "a small blue mug", "the largest cabinet",
               "a lamp", "the green sofa"]
    print("| points | phrase mode | model ms (median) | masks ms | total ms | target |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.points:
            pts, cols = room_cloud(n, random=args.random)
            for mode in ("phrase", "expression"):
                totals, models, masks = [], [], []
                for r in range(args.repeats + 1):
                    cfg = GroundConfig(scene=Path(tmp), phrase=phrases[r % len(phrases)], views=0)
                    timer = Timer()
                    t = time.perf_counter()
                    ground_points(model, encoder, pts, cols, cfg, mode, timer)
                    if r == 0:
                        continue  # warm-up
                    totals.append(time.perf_counter() - t)
                    models.append(timer.timings["model"])
                    masks.append(timer.timings["masks"])
                med = statistics.median(totals) * 1000
                print(f"| {n} | {mode} | {statistics.median(models) * 1000:.0f} | "
                      f"{statistics.median(masks) * 1000:.0f} | {med:.0f} | "
                      f"{'ok' if med <= 1000 else 'MISSED'} (<= 1000) |")


if __name__ == "__main__":
    main()
