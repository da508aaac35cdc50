"""Renderer speed and memory: compiled (numba) and torch CPU paths vs the dense reference.

    python benchmarks/render.py --threads 1     # full table (takes a few minutes)
    python benchmarks/render.py --quick         # the two tracked configurations only
    python benchmarks/render.py --layouts room --sizes 2000 --resolutions 64 --repeats 1  # smoke run

The tracked configurations are the pre-training view (room, 10k Gaussians, 128², 3+96+256
channels) and a paper-resolution view (room, 50k Gaussians, 512², 3+96 channels).

Timing: all fast backends of a configuration run in one fresh process; each renders once
untimed (numba loads or compiles its kernels, caches fill), then they are timed in
alternating order (A B, B A, ...) and the medians reported, so machine-load drift reaches every
backend alike. The speed-up against the dense reference comes from its own process in which
the first fast backend and the reference are both warmed up and then interleaved the same way
(``--ref-repeats`` pairs). "cpu ms" is the process CPU time of forward + backward (with one
thread: the wall time minus waits for the core, which other jobs on a shared machine add).
Threads: ``liftgs.runtime.configure_runtime(threads=--threads)`` in every process.

Memory: "peak MB" is the resident-memory growth of one forward + backward, measured in a fresh
process per backend: after set-up and one untimed render, the kernel's high-water mark is
reset and the RSS taken as baseline; peak = VmHWM after the render minus that baseline
(``_measure.PeakRSS``). Memory kept between calls (numba's walk scratch) is in the baseline.

Backward starts from fixed upstream gradients (``autograd.backward([values, alpha],
[g_values, g_alpha])``), so no loss's own cost is counted.
Layouts (5 cm scales, random rotations, opacities 0.5-0.9 throughout):
"room" = Gaussians on the fused point cloud of one ``liftgs.synth`` room (``standard``
preset, seed 0; subsampled, or upsampled by jittered copies, to N) seen from the room's
scan camera that sees most of them; "box" = a hand-built furnished box room seen from
inside; "random" = Gaussians in a frustum.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time

import torch
from _measure import PeakRSS, interleaved, run_worker

from liftgs.runtime import configure_runtime

CHANNELS = {"3": 3, "3+96": 99, "3+96+256": 355}


def box_scene(n: int, res: int, seed: int = 0) -> dict:
    """Gaussians sampled on a 6 x 5 x 3 m room's walls, floor, ceiling and a few boxes."""
    g = torch.Generator().manual_seed(seed)
    boxes = [((0, 0, 0), (6, 5, 3))]  # the room itself (inside faces)
    boxes += [((1.0, 3.2, 0), (2.6, 4.2, 0.75)), ((3.5, 0.5, 0), (4.3, 1.3, 0.9)),
              ((4.6, 3.0, 0), (5.6, 4.8, 2.0)), ((2.0, 1.0, 0), (2.5, 1.5, 0.45))]
    faces = []  # (origin, edge u, edge v)
    for lo, hi in boxes:
        lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
        size = hi - lo
        for axis in range(3):
            u, v = [a for a in range(3) if a != axis]
            for side in (lo, hi):
                o = lo.clone()
                o[axis] = side[axis]
                eu, ev = torch.zeros(3), torch.zeros(3)
                eu[u], ev[v] = size[u], size[v]
                faces.append((o, eu, ev))
    areas = torch.tensor([torch.linalg.cross(eu, ev).norm().item() for _, eu, ev in faces])
    f = torch.multinomial(areas, n, replacement=True, generator=g)
    st = torch.rand(n, 2, generator=g)
    O = torch.stack([faces[i][0] for i in range(len(faces))])[f]
    EU = torch.stack([faces[i][1] for i in range(len(faces))])[f]
    EV = torch.stack([faces[i][2] for i in range(len(faces))])[f]
    means = O + st[:, :1] * EU + st[:, 1:] * EV
    return _gaussians(means, g) | _camera(res, eye=(0.8, 0.7, 1.6), target=(4.5, 4.0, 0.9))


def synth_room_file(path: str, seed: int = 0) -> None:
    """Generate one ``standard`` synthetic room; save its points and best camera (npz)."""
    import numpy as np  # noqa: PLC0415

    from liftgs.synth import STANDARD, generate_room  # noqa: PLC0415

    scene = generate_room(STANDARD, seed)
    pts = scene.points.astype(np.float64)
    seen = []
    for f in scene.frames:  # the camera that sees most points
        cam = pts @ f.camera.viewmat[:3, :3].T + f.camera.viewmat[:3, 3]
        z = np.maximum(cam[:, 2], 1e-6)
        u = f.camera.K[0, 0] * cam[:, 0] / z + f.camera.K[0, 2]
        v = f.camera.K[1, 1] * cam[:, 1] / z + f.camera.K[1, 2]
        seen.append(int(((cam[:, 2] > 0.1) & (u >= 0) & (u < f.camera.width) & (v >= 0)
                         & (v < f.camera.height)).sum()))
    cam = scene.frames[int(np.argmax(seen))].camera
    np.savez(path, points=scene.points, viewmat=cam.viewmat, K=cam.K,
             size=np.array([cam.width, cam.height]))


def room_scene(n: int, res: int, path: str, seed: int = 0) -> dict:
    """The synthetic room's point cloud as N Gaussians, its camera rescaled to res x res."""
    import numpy as np  # noqa: PLC0415

    d = np.load(path)
    g = torch.Generator().manual_seed(seed)
    pts = torch.from_numpy(d["points"]).float()
    idx = torch.randperm(pts.shape[0], generator=g)[:n]
    if n > pts.shape[0]:  # upsample: jittered copies inside the 5 cm fusion voxel
        extra = torch.randint(pts.shape[0], (n - pts.shape[0],), generator=g)
        jitter = (torch.rand(extra.numel(), 3, generator=g) - 0.5) * 0.05
        pts = torch.cat([pts, pts[extra] + jitter])
        idx = torch.arange(n)
    means = pts[idx]
    K = torch.from_numpy(d["K"]).float()
    s = res / float(d["size"][0])
    K = torch.tensor([[K[0, 0] * s, 0, res / 2], [0, K[1, 1] * s, res / 2], [0, 0, 1.0]])
    cam = {"viewmat": torch.from_numpy(d["viewmat"]).float(), "K": K, "width": res,
           "height": res}
    return _gaussians(means, g) | cam


def random_scene(n: int, res: int, seed: int = 0) -> dict:
    """Gaussians uniformly in a camera frustum 1-6 m deep (a harder, deeper layout)."""
    g = torch.Generator().manual_seed(seed)
    z = 1.0 + 5.0 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * math.tan(math.radians(35))
    cam = _camera(res, eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 1.0), up=(0.0, -1.0, 0.0))
    means = torch.cat([xy, z[:, None]], 1)
    vm = cam["viewmat"]
    means = (means - vm[:3, 3]) @ vm[:3, :3]  # camera -> world
    return _gaussians(means, g) | cam


def _gaussians(means: torch.Tensor, g: torch.Generator) -> dict:
    n = means.shape[0]
    scales = 0.05 * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    return {"means": means.float(), "quats": torch.randn(n, 4, generator=g),
            "scales": scales, "opacities": 0.5 + 0.4 * torch.rand(n, generator=g)}


def _camera(res: int, eye, target, up=(0.0, 0.0, 1.0)) -> dict:
    eye, target, up = (torch.tensor(x, dtype=torch.float32) for x in (eye, target, up))
    fwd = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up), dim=0)
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # world -> camera rows
    vm = torch.eye(4)
    vm[:3, :3], vm[:3, 3] = R, -R @ eye
    f = 0.5 * res / math.tan(math.radians(30))  # 60 degree horizontal field of view
    K = torch.tensor([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])
    return {"viewmat": vm, "K": K, "width": res, "height": res}


def _setup(cfg: dict):
    """The configuration's Gaussians, attributes, camera and fixed upstream gradients."""
    configure_runtime(threads=cfg["threads"])
    torch.manual_seed(0)
    if cfg["layout"] == "room":
        s = room_scene(cfg["n"], cfg["res"], cfg["room_file"])
    else:
        s = (box_scene if cfg["layout"] == "box" else random_scene)(cfg["n"], cfg["res"])
    geom = [s[k].requires_grad_(True) for k in ("means", "quats", "scales", "opacities")]
    attr = torch.rand(cfg["n"], cfg["channels"], requires_grad=True)
    cam = (s["viewmat"], s["K"], s["width"], s["height"])
    P = cam[2] * cam[3]
    gen = torch.Generator().manual_seed(1)
    grads = [torch.rand(P, cfg["channels"], generator=gen) / P, torch.rand(P, generator=gen) / P]
    return geom, attr, cam, grads


def _forward_backward(impl: str, cfg: dict, geom, attr, cam, grads, extra: dict | None = None) -> dict[str, float]:
    """One render of ``impl`` and its backward from the fixed gradients; (fwd, bwd) seconds."""
    from liftgs.render import composite, render_reference, render_weights

    P = cam[2] * cam[3]
    t0 = time.perf_counter()
    if impl == "reference":
        values, alpha = render_reference(*geom, attr, *cam, chunk=cfg["chunk"])
    else:
        W = render_weights(*geom, *cam, backend=impl)
        values, alpha = composite(W, attr)
    t1 = time.perf_counter()
    if extra is not None and impl != "reference":  # outside the timed forward
        extra["pairs_per_pixel"] = float((W.values.detach() > 0).sum()) / P
    torch.autograd.backward([values.reshape(P, -1), alpha.reshape(P)], grads)
    t2 = time.perf_counter()
    for t in (*geom, attr):
        t.grad = None
    return {"fwd": t1 - t0, "bwd": t2 - t1}


def time_worker(cfg: dict) -> dict:
    """Every backend of ``cfg["impls"]`` in this one process: each warmed up once, then timed
    in alternating order (:func:`_measure.interleaved`), so speed-ups are warm against warm."""
    geom, attr, cam, grads = _setup(cfg)
    extra: dict = {}
    sides = {impl: (lambda impl=impl: _forward_backward(impl, cfg, geom, attr, cam, grads, extra))
             for impl in cfg["impls"]}
    times = interleaved(sides, cfg["repeats"])
    out = {impl: {"fwd_ms": 1e3 * statistics.median(t["fwd"]), "bwd_ms": 1e3 * statistics.median(t["bwd"]),
                  "cpu_ms": 1e3 * statistics.median(t["cpu"])} for impl, t in times.items()}
    fast = [i for i in cfg["impls"] if i != "reference"]
    if fast and cfg.get("channel_cost"):
        from liftgs.render import render_weights

        for impl in fast:
            out[impl].update(_channel_cost(render_weights(*geom, *cam, backend=impl), cfg))
    return {"times": out, **extra}


def memory_worker(cfg: dict) -> dict:
    """Peak RSS growth of one forward + backward of ``cfg["impl"]`` in this fresh process.

    A fast backend renders once untimed first, so loading numba's kernels is not counted; the
    high-water mark is reset after that and the baseline is the RSS then (:class:`PeakRSS`)."""
    geom, attr, cam, grads = _setup(cfg)
    if cfg["impl"] != "reference":
        _forward_backward(cfg["impl"], cfg, geom, attr, cam, grads)
    with PeakRSS() as mem:
        _forward_backward(cfg["impl"], cfg, geom, attr, cam, grads)
    return {"peak_mb": mem.growth_mb, "exact": mem.exact}


def _channel_cost(W, cfg: dict) -> dict:
    """Given weights, composite fwd+bwd (grads to W values and attributes) for 3 vs 259 ch."""
    from liftgs.render import composite

    out = {}
    for C in (3, 259):
        attr = torch.rand(cfg["n"], C, requires_grad=True)
        ts = []
        for _ in range(max(3, cfg["repeats"])):
            t0 = time.perf_counter()
            values, alpha = composite(W, attr)
            torch.autograd.grad([values, alpha], [attr, W.values],
                                [torch.ones_like(values), torch.ones_like(alpha)],
                                retain_graph=True)
            ts.append(1e3 * (time.perf_counter() - t0))
        out[f"composite_{C}ch_ms"] = statistics.median(ts)
    return out


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the goal configurations")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default="numba,torch", help="fast backends, comma-separated")
    ap.add_argument("--ref-repeats", type=int, default=1)
    ap.add_argument("--ref-max-pairs", type=float, default=2e8,
                    help="run the dense reference when N * pixels <= this")
    ap.add_argument("--layouts", default="room,random", help="of room, box, random")
    ap.add_argument("--sizes", default="10000,50000", help="Gaussian counts of the full table")
    ap.add_argument("--resolutions", default="128,512", help="image sides of the full table")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = _parse_args()
    if args.worker:
        cfg = json.loads(args.worker)
        print(json.dumps(memory_worker(cfg) if cfg["mode"] == "memory" else time_worker(cfg)))
        return
    configure_runtime(threads=args.threads)
    if args.quick:
        grid = [("room", 10_000, 128, "3+96+256"), ("room", 50_000, 512, "3+96")]
    else:
        grid = [(lay, n, res, ch) for lay in args.layouts.split(",") for n in map(int, args.sizes.split(","))
                for res in map(int, args.resolutions.split(",")) for ch in CHANNELS]
    tmp = tempfile.TemporaryDirectory()
    room_file = os.path.join(tmp.name, "room.npz")
    if any(lay == "room" for lay, *_ in grid):
        synth_room_file(room_file)
    backends = [b for b in args.backends.split(",") if b]
    print(f"torch {torch.__version__}, threads {args.threads}; times: medians of {args.repeats} "
          f"(reference: {args.ref_repeats}) after one warm-up of every backend, backends timed in "
          f"alternating order in one process; peak MB: resident-memory growth of one forward + backward "
          f"in a fresh process (VmHWM after minus VmRSS before, high-water mark reset after the warm-up); "
          f"load average at start {os.getloadavg()[0]:.1f}\n")
    head = ["layout", "N", "res", "channels", "pairs/px"]
    for b in backends:
        head += [f"{b} fwd ms", f"{b} bwd ms", f"{b} fwd+bwd ms", f"{b} cpu ms", f"{b} peak MB"]
    head += ["ref fwd+bwd ms", "ref peak MB", "speed-up vs ref"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    script = os.path.abspath(__file__)
    for lay, n, res, ch in grid:
        cfg = {"layout": lay, "n": n, "res": res, "channels": CHANNELS[ch], "threads": args.threads,
               "chunk": 1024, "room_file": room_file}
        channel_cost = args.quick or (ch == "3+96" and lay == "room")
        row, times = _measure_row(script, cfg, backends, args, channel_cost)
        print("| " + " | ".join([lay, f"{n // 1000}k", f"{res}²", ch, *row]) + " |", flush=True)
        for b in backends:
            r = times.get(b)
            if r and "composite_3ch_ms" in r:
                c3, c259 = r["composite_3ch_ms"], r["composite_259ch_ms"]
                print(f"|   {b}, given W: composite fwd+bwd 3 ch {c3:.1f} ms, 3+256 ch "
                      f"{c259:.1f} ms ({c259 / c3:.1f}x) |", flush=True)


def _measure_row(script: str, cfg: dict, backends: list[str], args: argparse.Namespace,
                 channel_cost: bool) -> tuple[list[str], dict]:
    """One table row after the configuration columns (pairs per pixel, per-backend times and
    peak memory, the reference's), and the fast backends' raw times."""
    n, res = cfg["n"], cfg["res"]
    with_ref = n * res * res <= args.ref_max_pairs
    impls = backends + (["reference"] if with_ref else [])
    # the reference is slow: time it only --ref-repeats times, and the fast backends in a run of their own
    timed = run_worker(script, cfg | {"mode": "time", "impls": backends, "repeats": args.repeats,
                                      "channel_cost": channel_cost})
    vs_ref = None
    if with_ref:
        vs_ref = run_worker(script, cfg | {"mode": "time", "impls": [backends[0], "reference"],
                                           "repeats": args.ref_repeats})
    mem = {b: run_worker(script, cfg | {"mode": "memory", "impl": b}) for b in impls}
    times = timed["times"] if timed else {}
    row = [f"{timed['pairs_per_pixel']:.1f}" if timed else "—"]
    for b in backends:
        r, m = times.get(b), mem.get(b)
        row += ([f"{r['fwd_ms']:.0f}", f"{r['bwd_ms']:.0f}", f"{r['fwd_ms'] + r['bwd_ms']:.0f}",
                 f"{r['cpu_ms']:.0f}"] if r else ["failed"] * 4) + [_mb(m)]
    if vs_ref is not None:
        ref, fast = vs_ref["times"]["reference"], vs_ref["times"][backends[0]]
        rt = ref["fwd_ms"] + ref["bwd_ms"]
        speed_up = rt / (fast["fwd_ms"] + fast["bwd_ms"])
        row += [f"{rt:.0f}", _mb(mem.get("reference")), f"{speed_up:.0f}x ({backends[0]})"]
    else:
        row += ["—", "—", "—"]
    return row, times


def _mb(result: dict | None) -> str:
    if result is None or result["peak_mb"] is None:
        return "failed" if result is None else "n/a"
    return f"{result['peak_mb']:.0f}" + ("" if result["exact"] else " (upper bound)")


if __name__ == "__main__":
    main()
