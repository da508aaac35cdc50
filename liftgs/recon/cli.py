"""Reconstruct 3D Gaussians per scene from posed RGB(-D) frames (3D Gaussian Splatting on the CPU).

``liftgs recon`` writes ``OUT/<scene_id>/gaussians.ply`` (the standard 3DGS PLY layout, readable by other 3DGS
tools) and ``OUT/<scene_id>/recon.json`` (held-out PSNR / SSIM, timings, warnings) per scene.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ReconArgs", "main", "run", "select_scenes", "build_config"]

SUMMARY_JSON, SPLAT_PLY, STATE_DIR = "recon.json", "gaussians.ply", "checkpoint"


@dataclass
class ReconArgs:
    """Reconstruct 3D Gaussians per scene from posed RGB(-D) frames (3D Gaussian Splatting on the CPU)."""

    data: Path  # a scene folder (with scene.json) or a folder of scene folders
    out: Path  # writes OUT/<scene_id>/gaussians.ply and recon.json
    schedule: Literal["standard", "fast"] = "standard"  # ~3 min or ~30 s per 128x128 room on 2 cores
    sh_degree: int | None = None  # spherical-harmonics degree 0-3 (default: the schedule's, 1)
    holdout_every: int | None = None  # every k-th frame is held out for PSNR/SSIM (default 8; 0 = none)
    steps: int | None = None  # optimisation steps (default: the schedule's)
    depth_weight: float | None = None  # weight of the depth L1 loss (default: the schedule's; 0 = off)
    exposure: Literal["auto", "on", "off"] | None = None  # per-frame colour affine (default auto)
    background: tuple[float, float, float] | None = None  # RGB in [0, 1] behind the Gaussians (default: auto)
    init: Path | None = None  # start one scene from this point cloud (.ply/.npy/.bin), not its own
    scenes: str | None = None  # comma-separated scene ids to reconstruct (default: every scene under --data)
    seed: int = 0
    threads: int = 2  # threads of the renderer's numba kernels (torch runs one; 0 = torch's default count)
    resume: bool = False  # continue an interrupted scene from OUT/<scene_id>/checkpoint/
    overwrite: bool = False  # redo scenes that already have recon.json
    progress: bool = True  # a progress bar per scene

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.background is not None and not all(0.0 <= float(c) <= 1.0 for c in self.background):
            raise ValueError(f"--background must be three numbers in [0, 1], got {self.background}")


def build_config(args: ReconArgs):
    """The schedule's :class:`ReconConfig` with the flags given (validated)."""
    from liftgs.recon.config import schedule_config

    overrides = {name: getattr(args, name) for name in ("sh_degree", "holdout_every", "steps", "depth_weight",
                                                         "exposure", "background")
                 if getattr(args, name) is not None}
    overrides["seed"] = args.seed
    if "background" in overrides:
        overrides["background"] = tuple(float(c) for c in overrides["background"])
    try:
        return schedule_config(args.schedule, **overrides)
    except ValueError as err:
        raise ValueError(f"--{str(err).replace('_', '-')}") from None


def select_scenes(data: Path, scenes: str | None) -> list[Path]:
    """The scene folders ``--data`` / ``--scenes`` name, each ``scene.json`` and camera checked."""
    from liftgs.io.errors import DataError
    from liftgs.io.scene_dir import SCENE_JSON, list_scenes, read_cameras

    data = Path(data)
    if not data.exists():
        raise DataError("--data: no such folder", data)
    if not data.is_dir():
        raise DataError("--data must be a scene folder or a folder of scene folders", data)
    if (data / SCENE_JSON).is_file():
        paths = [data]
    else:
        paths = list_scenes(data)
        if not paths:
            raise DataError("--data holds no scene folders (folders with scene.json)", data)
    if scenes:
        wanted = [s.strip() for s in scenes.split(",") if s.strip()]
        if not wanted:
            raise ValueError("--scenes: give comma-separated scene ids")
        by_name = {p.name: p for p in paths}
        missing = [s for s in wanted if s not in by_name]
        if missing:
            raise DataError(f"--scenes: no scene {', '.join(map(repr, missing))} here (found "
                            f"{', '.join(sorted(by_name)[:8])}{' ...' if len(by_name) > 8 else ''})", data)
        paths = [by_name[s] for s in wanted]
    for p in paths:
        if not read_cameras(p):
            raise DataError("scene has no frames to reconstruct from", p / SCENE_JSON)
    return paths


def _check_out(out: Path) -> None:
    from liftgs.io.errors import DataError

    if out.exists() and not out.is_dir():
        raise DataError("--out exists and is not a folder", out)


def run(args: ReconArgs) -> list[dict]:
    """Reconstruct every selected scene (library entry point of the command; runs on the
    caller's thread settings). Returns the summaries of the scenes done now or before."""
    import numpy as np

    from liftgs.config import save_json_atomic, to_dict
    from liftgs.io.ply import load_point_cloud
    from liftgs.io.scene_dir import read_scene
    from liftgs.io.splat_ply import write_splat_ply
    from liftgs.recon.optimise import reconstruct_scene
    from liftgs.recon.state import clear_state

    config = build_config(args)
    paths = select_scenes(args.data, args.scenes)
    _check_out(Path(args.out))
    init = None
    if args.init is not None:
        if len(paths) != 1:
            raise ValueError(f"--init starts one scene from a given cloud; --data holds {len(paths)} scenes "
                             "(pick one with --scenes)")
        init = load_point_cloud(args.init)
    summaries = []
    for path in paths:
        out_dir = Path(args.out) / path.name
        done = out_dir / SUMMARY_JSON
        if done.is_file() and (out_dir / SPLAT_PLY).is_file() and not args.overwrite:
            import json

            print(f"{path.name}: done already ({done}); --overwrite redoes it")
            summaries.append(json.loads(done.read_text()))
            continue
        scene = read_scene(path)
        t0 = time.perf_counter()
        cloud, summary = reconstruct_scene(scene, config, init_points=init, checkpoint_dir=out_dir / STATE_DIR,
                                           resume=args.resume, progress=args.progress)
        summary = {"scene": str(path), **summary, "config": to_dict(config),
                   "init": str(args.init) if args.init is not None else "scene points"}
        write_splat_ply(out_dir / SPLAT_PLY, cloud)
        save_json_atomic(done, summary)
        clear_state(out_dir / STATE_DIR)
        held = summary["heldout_psnr"]
        score = (f"held-out PSNR {held:.2f} dB, SSIM {summary['heldout_ssim']:.3f} "
                 f"({len(summary['heldout'])} views)" if held is not None else "no held-out views")
        print(f"{path.name}: {summary['num_gaussians']:,} Gaussians, {score}, train PSNR "
              f"{summary['train_psnr']:.2f} dB, {time.perf_counter() - t0:.0f} s -> {out_dir / SPLAT_PLY}")
        summaries.append(summary)
    if len(summaries) > 1:
        vals = [s["heldout_psnr"] for s in summaries if s.get("heldout_psnr") is not None]
        if vals:
            print(f"{len(summaries)} scenes: median held-out PSNR {float(np.median(vals)):.2f} dB")
    return summaries


def main(argv: list[str]) -> int:
    from liftgs.config import parse_cli
    from liftgs.runtime import configure_runtime

    args = parse_cli(ReconArgs, argv, prog="liftgs recon", description=__doc__.split("\n\n")[0])
    build_config(args)  # every setting checked before any work
    select_scenes(args.data, args.scenes)
    configure_runtime(threads=args.threads or None)  # the command owns the process
    import torch

    # The renderer's numba kernels run on --threads threads, torch on one: its ops here are
    # small (per-Gaussian vectors, one 128 x 128 SSIM) and its OpenMP threads spin-wait, so next
    # to another busy process on 2 cores a 2-thread SSIM took 0.7 s instead of 15 ms, and 60
    # steps of `fast` took 9.5 s with one torch thread vs 11.0 s with two (and passive waiting).
    torch.set_num_threads(1)
    run(args)
    sys.stdout.flush()
    return 0
