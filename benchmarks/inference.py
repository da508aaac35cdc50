"""Latency of grounding one phrase (``liftgs ground``) after the model is loaded.

Goal: with the ``tiny`` preset, a room whose point cloud occupies 50,000 voxels of 5 cm (the
model's grid, paper Sec 3.3.3) is grounded in <= 1 s on a 2-core CPU (the paper reports ~1 s
on a GPU against 60 s for ConceptFusion).

The network's cost follows the occupied voxels (sparse UNet) and the points (Gaussian head,
mask logits), so the cloud is built to hold exactly the stated number of occupied 5 cm voxels:
``standard`` synthetic rooms (fused at 5 cm: about one point per voxel) placed side by side
until there are enough voxels, then cut by a plane across the last room; ``--points-per-voxel``
adds jittered copies inside each voxel (real scans are denser), ``--random`` fills randomly
chosen voxels of a 5 x 4 x 2.5 m box instead. The voxel count is checked with the model's own
``voxelize`` and printed.

Weights: ``--checkpoint`` (a model, checkpoint or run folder) times a trained model. Without it
the tiny preset is built with random weights, which the output says: the network's work (every
convolution, attention and matrix product) depends only on the numbers of voxels, points and
query tokens, not on the weight values; only the mask post-processing (main connected piece
of each kept mask, boxes) depends on what the masks contain, so the mask sizes are printed and
the network time is reported apart from it.

Threads: ``liftgs.runtime.configure_runtime(threads=--threads)``. Prints median milliseconds
per stage over ``--repeats`` runs after one untimed warm-up run per cloud and mode.

    python benchmarks/inference.py [--voxels 20000 50000] [--repeats 5] [--checkpoint DIR]
    python benchmarks/inference.py --voxels 2000 --repeats 1 --modes phrase --text-encoder hash-384  # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from liftgs.runtime import configure_runtime

PHRASES = ["the red chair next to the table", "a small blue mug", "the largest cabinet", "a lamp", "the green sofa"]


def _cells(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Occupied voxels [V, 3] (sorted by x, y, z) and each point's voxel index, from float32
    points as the model computes them."""
    grid = np.floor(points.astype(np.float32) / np.float32(voxel_size)).astype(np.int64)
    cells, inverse = np.unique(grid, axis=0, return_inverse=True)
    return cells, inverse.ravel()


def room_cloud(voxels: int, voxel_size: float, points_per_voxel: int = 1, seed: int = 0,
               random: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Points [P, 3] and colours [P, 3] occupying exactly ``voxels`` voxels of ``voxel_size``."""
    rng = np.random.default_rng(seed)
    if random:
        shape = np.ceil(np.array([5.0, 4.0, 2.5]) / voxel_size).astype(np.int64)
        if voxels > int(np.prod(shape)):
            raise SystemExit(f"--random: a 5 x 4 x 2.5 m box has only {int(np.prod(shape))} voxels")
        flat = rng.choice(int(np.prod(shape)), voxels, replace=False)
        cells = np.stack(np.unravel_index(flat, tuple(shape)), 1)
        pts = (cells + rng.uniform(0.05, 0.95, (voxels, 3))) * voxel_size
        cols = rng.random((voxels, 3))
    else:
        from liftgs.synth import STANDARD, generate_room

        parts, cols_, x_end, found = [], [], 0.0, 0
        while found < voxels:  # rooms side by side, 0.5 m apart
            scene = generate_room(STANDARD, seed + len(parts))
            p = scene.points.copy()
            p[:, 0] += np.float32(x_end + 0.5 - p[:, 0].min())
            x_end = float(p[:, 0].max())
            parts.append(p)
            cols_.append(scene.colors)
            found += len(_cells(p, voxel_size)[0])
        pts, cols = np.concatenate(parts), np.concatenate(cols_)
        _, inverse = _cells(pts, voxel_size)
        keep = inverse < voxels  # voxels sorted by x: a cut by a plane across the last room
        pts, cols = pts[keep], cols[keep]
    if points_per_voxel > 1:  # jittered copies that stay inside their point's voxel
        cell = np.floor(pts.astype(np.float32) / np.float32(voxel_size)).astype(np.float64)
        extra = np.repeat(np.arange(len(pts)), points_per_voxel - 1)
        jittered = pts[extra] + rng.normal(0, voxel_size / 4, (len(extra), 3))
        margin = 0.01 * voxel_size  # far above float32 rounding at room coordinates
        jittered = np.clip(jittered, cell[extra] * voxel_size + margin, (cell[extra] + 1) * voxel_size - margin)
        pts, cols = np.concatenate([pts, jittered]), np.concatenate([cols, cols[extra]])
    return pts.astype(np.float32), cols.astype(np.float32)


def count_voxels(points: np.ndarray, colors: np.ndarray, voxel_size: float) -> int:
    """Occupied voxels as the model sees them (its own voxelisation)."""
    from liftgs.modules.voxelize import voxelize

    t = torch.from_numpy(points)
    return int(voxelize(t, torch.from_numpy(colors), torch.tensor([len(t)]), voxel_size).coords.shape[0])


def load(args):
    """(model, text encoder, description of the weights)."""
    from liftgs.models import build_model, load_model
    from liftgs.text import load_text_encoder

    encoder = load_text_encoder(args.text_encoder)
    if args.checkpoint is not None:
        model = load_model(args.checkpoint).eval()
        if model.text_dim != encoder.dim:
            raise SystemExit(f"{args.checkpoint}: the model takes {model.text_dim}-d queries but "
                             f"--text-encoder {args.text_encoder!r} gives {encoder.dim}-d vectors")
        return model, encoder, f"trained weights from {args.checkpoint}"
    torch.manual_seed(0)
    model = build_model("liftgs", "tiny", encoder.dim).eval()
    return model, encoder, ("RANDOM weights (no --checkpoint): the network's cost depends only on the numbers of "
                            "voxels, points and query tokens, not on the weight values; the mask post-processing "
                            "depends on the mask sizes printed below, so give --checkpoint to time it on real masks")


class NetworkTimer:
    """Times the model's own calls (encode, decode, Gaussian head) inside ``ground``."""

    def __init__(self, model) -> None:
        self.seconds, self._start = 0.0, 0.0
        for name in ("encode", "decode"):
            setattr(model, name, self._timed(getattr(model, name)))
        model.gaussian_head.register_forward_pre_hook(self._enter)  # a submodule: hooks, not a wrapper
        model.gaussian_head.register_forward_hook(self._leave)

    def _enter(self, module, args) -> None:
        self._start = time.perf_counter()

    def _leave(self, module, args, output) -> None:
        self.seconds += time.perf_counter() - self._start

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            return out

        return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voxels", type=int, nargs="+", default=[20000, 50000], help="occupied 5 cm voxels")
    ap.add_argument("--points-per-voxel", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model, checkpoint or run folder")
    ap.add_argument("--text-encoder", default="minilm", help="must match the checkpoint's query width")
    ap.add_argument("--modes", default="phrase,zero-shot,expression")
    ap.add_argument("--random", action="store_true", help="random voxels of a box instead of synthetic rooms")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    configure_runtime(threads=args.threads)

    from liftgs.ground import GroundConfig, Timer, ground_points

    t0 = time.perf_counter()
    model, encoder, weights = load(args)
    voxel_size = model.voxel_size
    print(f"model + text encoder {encoder.name!r} loaded in {time.perf_counter() - t0:.1f} s (not counted below)")
    print(f"weights: {weights}")
    print(f"threads: {torch.get_num_threads()}; medians of {args.repeats} after one warm-up run\n")
    network = NetworkTimer(model)
    print("| voxels (5 cm) | points | mode | network ms | text, ranking + masks ms | total ms "
          "| top mask points | goal |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.voxels:
            pts, cols = room_cloud(n, voxel_size, args.points_per_voxel, random=args.random)
            found = count_voxels(pts, cols, voxel_size)
            assert found == n, f"built {found} voxels, wanted {n}"
            for mode in args.modes.split(","):
                totals, nets, sizes = [], [], []
                for r in range(args.repeats + 1):
                    cfg = GroundConfig(scene=Path(tmp), phrase=PHRASES[r % len(PHRASES)], views=0)
                    network.seconds = 0.0
                    t = time.perf_counter()
                    out = ground_points(model, encoder, pts, cols, cfg, mode, Timer())
                    if r == 0:
                        continue  # warm-up
                    totals.append(time.perf_counter() - t)
                    nets.append(network.seconds)
                    sizes.append(int(out.masks[0].sum()) if len(out.masks) else 0)
                total, net = statistics.median(totals) * 1000, statistics.median(nets) * 1000
                goal = f"{'met' if total <= 1000 else 'missed'} (<= 1000 ms)" if n >= 50000 else "-"
                print(f"| {found} | {len(pts)} | {mode} | {net:.0f} | {total - net:.0f} | {total:.0f} | "
                      f"{statistics.median(sizes):.0f} | {goal} |", flush=True)


if __name__ == "__main__":
    main()
