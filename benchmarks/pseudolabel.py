"""Synthetic-teacher pseudo-labelling speed on the ``standard`` synthetic preset.

    python benchmarks/pseudolabel.py               # 3 rooms x 20 frames, 128 x 128
    python benchmarks/pseudolabel.py --rooms 5

Goal: the pseudo-labelling pipeline with the synthetic teacher (the ``pipeline`` column)
labels >= 20 frames/s on a 2-core CPU.

Rooms come from ``liftgs.synth.generate_room``. The real MiniLM text encoder is used; its
load time and a one-frame warm-up (lazy imports) are excluded; its phrase cache starts
cold for every row. Threads: ``liftgs.runtime.configure_runtime(threads=--threads)``. Rows:

* teacher  — ``label_frames`` only (segments, captions, one batched text-encoder call / 8 frames);
* pipeline — ``liftgs pseudolabel`` core: teacher + area filter + atomic safetensors writes;
* verify   — a rerun that finds every frame cached and verifies it (checksum, size, settings).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from liftgs.runtime import configure_runtime


def make_scenes(rooms: int, seed: int = 0):
    from liftgs.synth import STANDARD, generate_room

    return [generate_room(STANDARD, seed + i, scene_id=f"room{i}") for i in range(rooms)]


def bench(scenes, noise, encoder_factory) -> dict[str, float]:
    from liftgs.teachers import PseudoLabelStore, SyntheticTeacher, label_frames
    from liftgs.teachers.pipeline import jobs_from_scenes, pseudolabel

    n = sum(len(s.frames) for s in scenes)
    SyntheticTeacher(encoder_factory(), noise)(scenes[0].frames[0], scenes[0])  # warm-up: lazy imports
    teacher = SyntheticTeacher(encoder_factory(), noise)
    t0 = time.perf_counter()
    segs = 0
    for s in scenes:
        for b in range(0, len(s.frames), 8):
            segs += sum(lab.num_segments for lab in label_frames(teacher, s.frames[b:b + 8], s))
    t_teacher = time.perf_counter() - t0
    teacher = SyntheticTeacher(encoder_factory(), noise)
    with tempfile.TemporaryDirectory() as tmp:
        store = PseudoLabelStore(tmp)
        t0 = time.perf_counter()
        summary = pseudolabel(jobs_from_scenes(scenes), teacher, store, progress=False)
        t_pipe = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = pseudolabel(jobs_from_scenes(scenes), teacher, store, progress=False)
        t_verify = time.perf_counter() - t0
        assert again.skipped == n and again.labelled == 0
    return {"frames": n, "teacher": n / t_teacher, "pipeline": n / t_pipe, "verify": n / t_verify,
            "segs_raw": segs / n, "segs_kept": summary.segments_per_frame}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small text batches: 1 is fastest)")
    args = ap.parse_args()
    configure_runtime(threads=args.threads)
    from liftgs.teachers import SyntheticNoise
    from liftgs.text import SentenceEncoder, load_text_encoder

    t0 = time.perf_counter()
    scenes = make_scenes(args.rooms, args.seed)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = load_text_encoder("minilm")
    t_load = time.perf_counter() - t0

    def fresh():  # same weights, cold phrase cache
        return SentenceEncoder(base.model, base.tokenizer, name=base.name, max_length=base.max_length)

    H, W = scenes[0].frames[0].rgb.shape[:2]
    print(f"{args.rooms} rooms, {sum(len(s.frames) for s in scenes)} frames of {W}x{H} "
          f"(generated in {t_gen:.1f} s); MiniLM loaded in {t_load:.1f} s; torch threads {torch.get_num_threads()}")
    rows = [("clean (knobs off)", SyntheticNoise()), ("realistic noise", SyntheticNoise.realistic())]
    header = f"| {'teacher setting':<18} | {'teacher f/s':>11} | {'pipeline f/s':>12} | {'verify f/s':>10} | {'segs/frame raw':>14} | {'segs/frame kept':>15} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, noise in rows:
        r = bench(scenes, noise, fresh)
        print(f"| {label:<18} | {r['teacher']:>11.1f} | {r['pipeline']:>12.1f} | {r['verify']:>10.1f} | "
              f"{r['segs_raw']:>14.2f} | {r['segs_kept']:>15.2f} |")
    print("goal: >= 20 frames/s (pipeline column)")


if __name__ == "__main__":
    main()
