"""Zero-shot grounding by object caption after pre-training, against a random-object baseline.

Goal: after <= 15 minutes of pre-training on `standard` training rooms (2-core CPU), held-out
rooms queried by each object's caption ("a red chair") reach Acc@0.25 >= 3x the accuracy of
picking a random object of the room (paper Sec 3.4: grounding from 2D supervision alone).
Prints one row per checkpoint, with the wall-clock training time read from the run's
log.jsonl. Threads: ``liftgs.runtime.configure_runtime(threads=--threads)``.

    python benchmarks/zero_shot.py --run runs/pre --data data/synth [--split val | --split all] [--rank-by features]
    python benchmarks/zero_shot.py --run runs/pre --data heldout --split all --final   # final weights only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from liftgs.runtime import configure_runtime


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    out = [(int(p.name.split("_")[-1]), p / "model") for p in sorted((run / "checkpoints").glob("step_*"))
           if (p / "model").is_dir()]
    if (run / "model").is_dir():  # final weights: a row of their own unless the last checkpoint holds them
        times = step_times(run)
        if not out or not times or out[-1][0] != max(times):
            out.append((10**9, run / "model"))
    return out


def step_times(run: Path) -> dict[int, float]:
    times = {}
    log = run / "log.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if "step" in rec and "time" in rec:
                times[int(rec["step"])] = float(rec["time"])
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="pretrain run directory")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="val", help='held-out split of splits.json, or "all" (rooms never trained on)')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rank-by", default=None, choices=("tokens", "features", "both"),
                    help="proposal ranking (default: the library's zero-shot ranking, "
                         "liftgs.models.liftgs.inference.ZERO_SHOT_RANKING)")
    ap.add_argument("--final", action="store_true", help="evaluate only the final weights (one row), not every checkpoint")
    args = ap.parse_args()
    configure_runtime(threads=args.threads)

    from liftgs.eval.runner import ModelGrounder
    from liftgs.eval.zeroshot import zero_shot_caption_accuracy
    from liftgs.io import list_scenes, read_scene
    from liftgs.models.liftgs import LiftGS
    from liftgs.models.liftgs.inference import ZERO_SHOT_RANKING
    from liftgs.text import load_text_encoder

    rank_by = args.rank_by or ZERO_SHOT_RANKING
    rows = checkpoints(args.run)
    if not rows:
        raise SystemExit(f"{args.run}: no checkpoints/step_*/model or model/ directory; is it a pretrain run?")

    encoder = load_text_encoder("minilm")
    paths = list_scenes(args.data) if args.split == "all" else list_scenes(args.data, args.split)
    scenes = [read_scene(p, load_frames=False) for p in paths]
    times = step_times(args.run)
    last = max(times) if times else 0
    print(f"{len(scenes)} held-out rooms of {args.data} ({args.split}); proposals ranked by {rank_by}\n")
    print("| step | train min | Acc@0.25 | Acc@0.5 | random Acc@0.25 | random Acc@0.5 | ratio @0.25 | queries |")
    print("|---|---|---|---|---|---|---|---|")
    for step, model_dir in rows[-1:] if args.final else rows:
        step = last if step == 10**9 else step
        model = LiftGS.from_pretrained(model_dir).eval()
        res = zero_shot_caption_accuracy(scenes, ModelGrounder(model, encoder, top_k=5, rank_by=rank_by))
        m, r = res["model"], res["random"]
        ratio = m["acc@0.25"] / r["acc@0.25"] if r["acc@0.25"] else float("nan")
        minutes = times.get(step, float("nan")) / 60
        print(f"| {step} | {minutes:.1f} | {100 * m['acc@0.25']:.1f} | {100 * m['acc@0.5']:.1f} | "
              f"{100 * r['acc@0.25']:.1f} | {100 * r['acc@0.5']:.1f} | {ratio:.2f}x | {m['n']} |", flush=True)


if __name__ == "__main__":
    main()
