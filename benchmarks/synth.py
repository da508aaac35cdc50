"""Speed of the synthetic benchmark generator.

Goal: 100 ``standard`` rooms generated and written in <= 5 minutes on a 2-core CPU.

Times generation (layout, TinyRenderer frames, fusion, language) and writing of rooms per
preset, prints time per room and per frame, the projection agreement of the generated rooms
and the extrapolated time for 100 standard rooms. ``--rooms 100`` instead generates a full
100-room standard dataset with ``generate_dataset`` (what ``liftgs synth`` runs) and times it.

    python benchmarks/synth.py                  # 10 quick + 10 standard rooms (~15 s)
    python benchmarks/synth.py --rooms 100      # the full check
    python benchmarks/synth.py --sample 1       # smoke run

Threads: ``liftgs.runtime.configure_runtime(threads=--threads)``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liftgs.config import parse_cli
from liftgs.io.scene_dir import write_scene
from liftgs.runtime import configure_runtime
from liftgs.synth import PRESETS, generate_room, room_seed
from liftgs.synth.checks import projection_agreement
from liftgs.synth.dataset import generate_dataset

BUDGET_S = 300.0  # 100 standard rooms in 5 minutes


@dataclass
class BenchArgs:
    """Benchmark the synthetic room generator."""

    sample: int = 10  # rooms measured per preset
    rooms: int = 0  # if > 0: time a full `standard` dataset of this many rooms instead of sampling
    seed: int = 0
    threads: int = 1  # torch / numba threads


def measure(preset: str, rooms: int, seed: int, out: Path) -> dict[str, float]:
    config = PRESETS[preset]
    gen, write, depth, inst, points, exprs = [], [], [], [], [], []
    for i in range(rooms):
        t0 = time.perf_counter()
        scene = generate_room(config, room_seed(seed, i), scene_id=f"{preset}_{i:04d}")
        t1 = time.perf_counter()
        write_scene(scene, out)
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        write.append(t2 - t1)
        a = projection_agreement(scene)
        depth.append(a.depth_ratio)
        inst.append(a.instance_ratio)
        points.append(scene.num_points)
        exprs.append(len(scene.expressions))
    total = np.add(gen, write)
    return {"rooms": rooms, "frames": config.num_frames, "size": f"{config.width}x{config.height}",
            "gen": float(np.mean(gen)), "write": float(np.mean(write)), "room": float(np.mean(total)),
            "frame": float(np.mean(total)) / config.num_frames, "points": float(np.mean(points)),
            "exprs": float(np.mean(exprs)), "depth_min": min(depth), "depth_mean": float(np.mean(depth)),
            "inst_min": min(inst), "inst_mean": float(np.mean(inst))}


def main() -> None:
    args = parse_cli(BenchArgs, None, prog="benchmarks/synth.py", description=BenchArgs.__doc__)
    configure_runtime(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.rooms > 0:
            t0 = time.perf_counter()
            generate_dataset(PRESETS["standard"], Path(tmp) / "ds", rooms=args.rooms, seed=args.seed)
            dt = time.perf_counter() - t0
            verdict = "OK" if dt * 100 / args.rooms <= BUDGET_S else "TOO SLOW"
            print(f"\n{args.rooms} standard rooms: {dt:.1f} s total, {dt / args.rooms:.3f} s/room "
                  f"-> 100 rooms {dt * 100 / args.rooms:.0f} s (budget {BUDGET_S:.0f} s) {verdict}")
            return
        rows = {p: measure(p, args.sample, args.seed, Path(tmp)) for p in ("quick", "standard")}
    print("| preset | rooms | image | frames | s/room (gen + write) | ms/frame | points | expressions "
          "| depth agree min / mean | instance agree min / mean |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p, r in rows.items():
        print(f"| {p} | {r['rooms']} | {r['size']} | {r['frames']} | {r['room']:.3f} ({r['gen']:.3f} + "
              f"{r['write']:.3f}) | {1000 * r['frame']:.1f} | {r['points']:.0f} | {r['exprs']:.1f} "
              f"| {100 * r['depth_min']:.1f}% / {100 * r['depth_mean']:.1f}% "
              f"| {100 * r['inst_min']:.1f}% / {100 * r['inst_mean']:.1f}% |")
    est = 100 * rows["standard"]["room"]
    print(f"\nextrapolated: 100 standard rooms ~ {est:.0f} s (budget {BUDGET_S:.0f} s) "
          f"{'OK' if est <= BUDGET_S else 'TOO SLOW'}; run with --rooms 100 to measure it")


if __name__ == "__main__":
    main()
