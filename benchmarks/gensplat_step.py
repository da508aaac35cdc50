"""Time of a step of ``liftgs gensplat-semantic`` (stage I) and ``liftgs gensplat-instance``
(stage II) with the ``tiny`` preset's defaults, on reconstructed rooms.

Goal: stage I + stage II on >= 40 reconstructed rooms in <= 30 minutes on a 2-core CPU with the
``tiny`` presets (800 steps each), i.e. about 1 s per step or less.

Every number of a step comes from the preset (one scene, 2 views x 2048 pixels at 128 px); only
the run's length, folder and bookkeeping are set here. The runs are ``run_gensplat_semantic`` and
``run_gensplat_instance`` themselves (stage II from the stage-I run, ``--init``), so the stream of
scenes and views is the one training sees. Reported per stage: the loop's own ``step_time``
(sampling, forward, render, loss, backward, clipping, AdamW; logging and checkpoints excluded),
median and quartiles after ``--warmup`` steps, and the process CPU time per step (what the step
costs when the machine is shared: wall time grows with other jobs, CPU time much less).

    python benchmarks/gensplat_step.py --data data48 --recon recon48 --labels labels48 [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from liftgs.runtime import configure_runtime


def timed_run(run, config, encoder) -> tuple[list[float], list[float]]:
    """(wall step times, CPU seconds per step) of one run."""
    walls: list[float] = []
    cpus: list[float] = []
    last = [time.process_time()]

    def hook(step, scalars):
        now = time.process_time()
        walls.append(scalars["step_time"])
        cpus.append(now - last[0])
        last[0] = now

    run(config, text_encoder=encoder, on_step_end=hook)
    return walls, cpus


def summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"median {statistics.median(values):.2f} s (quartiles {q[0]:.2f}-{q[2]:.2f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recon", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-encoder", default="minilm")
    args = parser.parse_args()
    configure_runtime(threads=args.threads)

    from liftgs.recipes.gensplat import (INSTANCE_PRESETS, SEMANTIC_PRESETS, run_gensplat_instance,
                                         run_gensplat_semantic)
    from liftgs.text import load_text_encoder

    encoder = load_text_encoder(args.text_encoder)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(data=args.data, recon=args.recon, split=args.split, steps=args.steps,
                      ckpt_every=args.steps, log_every=args.steps, tensorboard=False, progress=False,
                      device="cpu", text_encoder=args.text_encoder)
        first = replace(SEMANTIC_PRESETS["tiny"], labels=args.labels, out=Path(tmp) / "s1", **common)
        second = replace(INSTANCE_PRESETS["tiny"], init=Path(tmp) / "s1", out=Path(tmp) / "s2", **common)
        print(f"threads {args.threads}; tiny presets: {first.views_per_scene} views x {first.num_pixels} px "
              f"at {first.image_size} px, batch {first.batch_size}; {args.steps} steps, first {args.warmup} left out")
        for name, run, config in (("stage I (semantic)", run_gensplat_semantic, first),
                                  ("stage II (instance)", run_gensplat_instance, second)):
            walls, cpus = timed_run(run, config, encoder)
            print(f"{name}: wall {summary(walls[args.warmup:])}; CPU {summary(cpus[args.warmup:])}")


if __name__ == "__main__":
    main()
