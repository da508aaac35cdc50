"""Per-scene reconstruction (`liftgs recon`): held-out PSNR / SSIM and time per schedule.

    python benchmarks/recon.py --data /work/exp/data48 --rooms 3               # both schedules
    python benchmarks/recon.py --data data48 --rooms 8 --schedules fast --threads 2

Each (room, schedule) runs as its own ``liftgs recon`` process (``--threads`` threads, a fresh
output folder), so every run pays what a user pays: numba's kernel load and the first render.
"seconds" is ``recon.json``'s: the wall time of ``reconstruct_scene`` (checks, optimisation,
evaluation), without reading the scene or writing the PLY. "cpu s" is the process's CPU time;
on a machine shared with other jobs, wall time grows with their load while CPU time does not,
so the load average at the start of each run is printed with the table. Rooms are the first N
scene folders under ``--data`` (sorted by name). Medians per schedule close the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_one(scene: Path, schedule: str, threads: int, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "liftgs.cli", "recon", "--data", str(scene.parent), "--scenes", scene.name,
           "--out", str(out), "--schedule", schedule, "--threads", str(threads), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads((out / scene.name / "recon.json").read_text())
    summary["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary["load"] = load
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of scene folders")
    parser.add_argument("--rooms", type=int, default=3, help="the first N scenes (sorted by name)")
    parser.add_argument("--schedules", default="fast,standard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write every summary here")
    args = parser.parse_args()
    scenes = sorted(p for p in args.data.iterdir() if (p / "scene.json").is_file())[: args.rooms]
    if not scenes:
        raise SystemExit(f"{args.data}: no scene folders")
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene in scenes:
            for schedule in schedules:
                s = run_one(scene, schedule, args.threads, Path(tmp) / f"{schedule}_{scene.name}")
                rows.append(s)
                print(f"{scene.name} {schedule}: {s['heldout_psnr']:.2f} dB, {s['seconds']:.0f} s",
                      file=sys.stderr)
    print(f"threads {args.threads}, {len(scenes)} rooms from {args.data}\n")
    print("| scene | schedule | #Gaussians | held-out PSNR | SSIM | seconds | cpu s | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in rows:
        print(f"| {s['scene_id']} | {s['schedule']} | {s['num_gaussians']:,} | {s['heldout_psnr']:.2f} | "
              f"{s['heldout_ssim']:.3f} | {s['seconds']:.1f} | {s['cpu_seconds']:.0f} | {s['load']:.1f} |")
    for schedule in schedules:
        sel = [s for s in rows if s["schedule"] == schedule]
        med = lambda key: statistics.median(s[key] for s in sel)  # noqa: E731
        print(f"| **median** | {schedule} | {med('num_gaussians'):,.0f} | {med('heldout_psnr'):.2f} | "
              f"{med('heldout_ssim'):.3f} | {med('seconds'):.1f} | {med('cpu_seconds'):.0f} | |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
