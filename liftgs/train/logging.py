"""Training logs: a tqdm bar with the live loss, TensorBoard scalars and a JSONL file.

Only the main process logs (``enabled=False`` elsewhere makes every method a no-op). The
JSONL log (``<run>/log.jsonl``, one JSON object per logged step) is the machine-readable
record tests and reports read; on resume, lines from steps after the checkpoint (written by
the killed run) are dropped so the file reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from liftgs.files import atomic_write

LOG_FILE = "log.jsonl"


class TrainLogger:
    """Progress bar + TensorBoard + JSONL for one run directory."""

    def __init__(self, run_dir: str | Path, total_steps: int, start_step: int = 0,
                 enabled: bool = True, tensorboard: bool = True, desc: str = "train",
                 show_progress: bool = True):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._writer = None
        self._fh = None
        self._bar = None
        self._t0 = time.perf_counter()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / LOG_FILE
        truncate_jsonl(log_path, keep_through_step=start_step)
        self._fh = open(log_path, "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"),
                                         purge_step=start_step + 1 if start_step else None)
        self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True,
                         disable=not show_progress)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record the scalars of training step ``step`` (1-based: steps completed)."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items()}
        record = {"step": int(step), "time": round(time.perf_counter() - self._t0, 4), **clean}
        self._fh.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in clean.items():
                if math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
        if self._bar is not None and "loss" in clean:
            self._bar.set_postfix(loss=f"{clean['loss']:.4f}", refresh=False)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def message(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
        if self._fh is not None:
            self._fh.close()
        self._bar = self._writer = self._fh = None

    def __enter__(self) -> "TrainLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL log (a run dir or the file itself); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_jsonl(path: Path, keep_through_step: int) -> None:
    """Drop records with ``step > keep_through_step`` (atomic rewrite); no file, no-op."""
    if not path.is_file():
        return
    records = read_jsonl(path)
    kept = [r for r in records if int(r.get("step", 0)) <= keep_through_step]
    if len(kept) == len(records):
        return
    with atomic_write(path) as fh:
        for r in kept:
            fh.write(json.dumps(r) + "\n")
