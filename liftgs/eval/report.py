"""Metric tables as Markdown and JSON (both written atomically).

Numbers are shown as percentages with one decimal, as the paper's tables print them; NaN (a class
or subset without ground truth) prints as "-" and is stored as JSON ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftgs.config import save_json_atomic
from liftgs.eval.instance_ap import InstanceAPResult
from liftgs.eval.scannet_format import write_text_atomic

__all__ = ["Table", "format_value", "instance_tables", "grounding_tables", "to_markdown", "json_ready",
           "write_report"]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def to_markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + " |"
        body = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in self.rows]
        return "\n".join([f"### {self.title}", "", head, sep, *body, ""])


def format_value(v: Any) -> str:
    """Fractions in [0, 1] as percentages with one decimal; counts as integers; NaN as '-'."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{100.0 * v:.1f}"
    return str(v)


def instance_tables(result: InstanceAPResult, title: str = "Instance segmentation") -> list[Table]:
    """Summary (AP / AP50 / AP25, plus class groups) and a per-class table."""
    s = result.summary()
    summary = Table(f"{title}: summary ({result.num_scenes} scenes)", ["subset", "AP", "AP50", "AP25"])
    summary.rows.append(["all", s["ap"], s["ap50"], s["ap25"]])
    for group in result.classes.groups:
        summary.rows.append([group, s[f"{group}_ap"], s[f"{group}_ap50"], s[f"{group}_ap25"]])
    per_class = Table(f"{title}: per class", ["class", "AP", "AP50", "AP25"])
    for name, v in result.per_class().items():
        per_class.rows.append([name, v["ap"], v["ap50"], v["ap25"]])
    return [summary, per_class]


def grounding_tables(accuracy: dict[str, dict[str, float]] | None = None,
                     f1: dict[str, dict[str, float]] | None = None, title: str = "Grounding") -> list[Table]:
    """Acc@IoU by ScanRefer subset and F1@IoU by Multi3DRefer query type."""
    tables = []
    if accuracy:
        keys = [k for k in next(iter(accuracy.values())) if k != "n"]
        names = [k.replace("acc", "Acc").replace("miou", "mIoU") for k in keys]
        t = Table(f"{title}: accuracy", ["subset", *names, "n"])
        t.rows = [[name, *[row[k] for k in keys], int(row["n"])] for name, row in accuracy.items()]
        tables.append(t)
    if f1:
        keys = [k for k in next(iter(f1.values())) if k != "n"]
        t = Table(f"{title}: Multi3DRefer F1", ["type", *[k.replace("f1", "F1") for k in keys], "n"])
        t.rows = [[name, *[row[k] for k in keys], int(row["n"])] for name, row in f1.items()]
        tables.append(t)
    return tables


def to_markdown(tables: Sequence[Table], heading: str | None = None) -> str:
    parts = [f"## {heading}", ""] if heading else []
    parts += [t.to_markdown() for t in tables]
    return "\n".join(parts)


def json_ready(obj: Any) -> Any:
    """NaN / inf -> None, numpy scalars -> Python numbers, Paths -> str, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(out_dir: str | Path, tables: Sequence[Table], data: dict[str, Any], stem: str = "metrics",
                 heading: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.md`` (the tables) and ``<stem>.json`` (``data``) into ``out_dir``."""
    out_dir = Path(out_dir)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    write_text_atomic(md, to_markdown(tables, heading))
    save_json_atomic(js, json_ready(data))
    return md, js
