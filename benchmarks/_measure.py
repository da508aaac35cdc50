"""Measurement helpers the benchmarks share: peak-memory growth and warm, interleaved timing.

* Memory: :class:`PeakRSS` reads the kernel's resident-set counters of this process
  (``VmRSS`` and the high-water mark ``VmHWM`` in ``/proc/self/status``). On entry it resets the
  high-water mark (``/proc/self/clear_refs``) and takes the current RSS as the baseline; on exit
  the growth is ``VmHWM - baseline``: the peak extra memory of the block itself (tensors, numba
  scratch, allocator caches), not of imports or earlier work. Run the block in a fresh process
  (``run_worker``) so that nothing else in the process shares the counters.
* Time: :func:`interleaved` warms every side first (numba compiles or loads its kernels, caches
  fill), then times the sides alternately (A B, B A, ...), so a change in machine load during
  the run reaches every side alike and a speed-up compares warm against warm.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from typing import Callable


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Current resident set size of this process (MB); None where /proc is unavailable."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark (Linux ``clear_refs`` 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """``with PeakRSS() as m: work()`` -> ``m.growth_mb``: peak RSS during the block minus the
    RSS at its start. ``m.exact`` is False when the high-water mark could not be reset; the
    growth is then an upper bound (an earlier peak of the process may be counted)."""

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.exact = reset_peak_rss()
        self.base_mb = rss_mb()
        self.growth_mb: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kb("VmHWM")
        if peak is not None and self.base_mb is not None:
            self.growth_mb = peak / 1024.0 - self.base_mb


def interleaved(sides: dict[str, Callable[[], dict[str, float] | None]], repeats: int,
                warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """Time every side ``repeats`` times, alternating their order, after ``warmup`` untimed
    calls of each. A side may return its own sub-timings (seconds by name); they are kept next
    to the wall time ``"total"`` and the process CPU time ``"cpu"``."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    names = list(sides)
    out: dict[str, dict[str, list[float]]] = {k: {} for k in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            c0, t0 = time.process_time(), time.perf_counter()
            laps = sides[name]() or {}
            t1, c1 = time.perf_counter(), time.process_time()
            for key, value in {"total": t1 - t0, "cpu": c1 - c0, **laps}.items():
                out[name].setdefault(key, []).append(value)
    return out


def run_worker(script: str, cfg: dict) -> dict | None:
    """Run ``script --worker JSON`` in a fresh Python process; its last stdout line is the JSON
    result. Prints the last stderr line and returns None when the worker fails."""
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(cfg)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# {cfg} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])
