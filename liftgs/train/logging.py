"""Training logs: a tqdm bar with the live loss, TensorBoard scalars and pictures, a JSONL
file, and Weights & Biases when asked for (``wandb_project``; needs ``pip install wandb``).

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
                 show_progress: bool = True, wandb_project: str | None = None,
                 wandb_mode: str = "online", config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._writer = None
        self._fh = None
        self._bar = None
        self._wandb = None
        self._t0 = time.perf_counter()
        if not enabled:
            return
        if wandb_project:
            self._wandb = start_wandb(wandb_project, wandb_mode, self.run_dir, config, resume=start_step > 0)
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
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in clean.items() if math.isfinite(v)}, step=int(step))
        if self._bar is not None and "loss" in clean:
            self._bar.set_postfix(loss=f"{clean['loss']:.4f}", refresh=False)

    def log_images(self, step: int, images: dict[str, Any]) -> None:
        """Record pictures (uint8 [H, W, 3]) of training step ``step`` under their tags."""
        if not self.enabled or not images:
            return
        if self._writer is not None:
            for tag, image in images.items():
                self._writer.add_image(tag, image, step, dataformats="HWC")
        if self._wandb is not None:
            import wandb  # noqa: PLC0415  (present: start_wandb imported it)

            self._wandb.log({tag: wandb.Image(image) for tag, image in images.items()}, step=int(step))

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
        if self._wandb is not None:
            self._wandb.finish()
        self._bar = self._writer = self._fh = self._wandb = None

    def __enter__(self) -> "TrainLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_wandb() -> None:
    """Refuse ``--wandb-project`` at the door when the wandb package is missing."""
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ValueError("--wandb-project needs the wandb package: pip install wandb")


def start_wandb(project: str, mode: str, run_dir: Path, config: dict[str, Any] | None, resume: bool):
    """A Weights & Biases run for ``run_dir`` (its name; files under it), mode "online" or
    "offline" by argument (no environment variable is read or set here). A resumed training
    run continues the same wandb run (id kept in ``run_dir/wandb_id``)."""
    check_wandb()
    import wandb  # noqa: PLC0415  (optional dependency)

    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    run = wandb.init(project=project, mode=mode, dir=str(run_dir), name=run_dir.name, config=config or {},
                     id=run_id, resume="allow" if run_id else None)
    if run_id is None:
        with atomic_write(id_file) as fh:
            fh.write(str(run.id))
    return run


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
