"""The bf16-against-fp32 comparison every recipe's mixed-precision test makes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def run_both_precisions(run: Callable[[Path, str], None], root: Path) -> dict[str, tuple[list, dict]]:
    """``run(out, precision)`` trains into ``out`` for "fp32" and "bf16" (folders under ``root``);
    checks that bf16's first-step loss is within 10 % of fp32's and its saved weights (every
    ``*.safetensors`` of ``out/model``) are float32; returns {precision: (log records, weights)}."""
    from safetensors.torch import load_file

    from liftgs.train.logging import read_jsonl

    out = {}
    for precision in ("fp32", "bf16"):
        folder = Path(root) / precision
        run(folder, precision)
        files = sorted((folder / "model").rglob("*.safetensors"))
        out[precision] = read_jsonl(folder), {k: v for f in files for k, v in load_file(str(f)).items()}
    weights = out["bf16"][1]
    assert weights and all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    assert out["bf16"][0][0]["loss"] == pytest.approx(out["fp32"][0][0]["loss"], rel=0.1)
    return out
