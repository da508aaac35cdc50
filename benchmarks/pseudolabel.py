"""Synthetic-teacher pseudo-labelling speed on the ``standard`` synthetic preset.

    python benchmarks/pseudolabel.py               # 3 rooms x 20 frames, 128 x 128
    python benchmarks/pseudolabel.py --rooms 5

Rooms come from ``liftgs.synth.generate_room`` (or, if the synth module is missing,
fabricated 128 x 128 frames with 6-15 instances). The real MiniLM text encoder is used; its
load time and a one-frame warm-up (lazy imports) are excluded; its phrase cache starts
cold for every row. Rows:

* teacher  — ``label_frames`` only (segments, captions, one batched text-encoder call / 8 frames);
* pipeline — ``liftgs pseudolabel`` core: teacher + area filter + atomic safetensors writes;
* verify   — a rerun that finds every frame cached and verifies it (checksum, size, settings).

Target (issue 4): >= 20 frames/s for the synthetic teacher on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def make_scenes(rooms: int, seed: int = 0):
    try:
        from liftgs.synth import STANDARD, generate_room
    except ImportError:
        return fabricated(rooms, seed)
    return [generate_room(STANDARD, seed + i, scene_id=f"room{i}") for i in range(rooms)]


def fabricated(rooms: int, seed: int = 0, frames: int = 20, size: int = 128):
    from liftgs.types import Camera, Frame, ObjectInfo, Scene

    rng = np.random.default_rng(seed)
    cats, colors = ["chair", "table", "lamp", "sofa", "box", "shelf"], ["red", "blue", "green", "white"]
    out = []
    for r in range(rooms):
        n = int(rng.integers(6, 16))
        objects = {i: ObjectInfo(cats[i % 6], {"color": colors[i % 4], "size": "large",
                                               "caption": f"a {colors[i % 4]} {cats[i % 6]}"}) for i in range(n)}
        fr = []
        for f in range(frames):
            inst = np.full((size, size), -1, np.int32)
            for i in range(n):
                y, x = rng.integers(0, size - 16, 2)
                h, w = rng.integers(8, 48, 2)
                inst[y:y + h, x:x + w] = i
            cam = Camera(np.array([[90.0, 0, 64], [0, 90.0, 64], [0, 0, 1]]), np.eye(4), size, size)
            fr.append(Frame(cam, np.zeros((size, size, 3), np.uint8), instance_ids=inst, name=f"{f:06d}"))
        out.append(Scene(f"room{r}", np.zeros((1, 3)), np.zeros((1, 3)), fr, objects=objects))
    return out


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
    torch.set_num_threads(args.threads)
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
    print("target: >= 20 frames/s (pipeline column)")


if __name__ == "__main__":
    main()
