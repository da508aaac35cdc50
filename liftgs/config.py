"""Typed configuration helpers.

Configs are dataclasses validated in ``__post_init__`` (errors say how to fix them); presets
are plain Python objects; every subcommand's CLI is generated from its dataclass by tyro.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parse_cli(config_cls: type[T], argv: list[str], prog: str, description: str | None = None,
              default: T | None = None) -> T:
    """Build ``config_cls`` from command-line arguments (``--help`` prints every field)."""
    import tyro

    return tyro.cli(config_cls, args=argv, prog=prog, description=description, default=default)


def to_dict(obj: Any) -> Any:
    """JSON-ready dict of a (nested) dataclass: Paths become strings, tuples lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(config_cls: type[T], data: dict[str, Any]) -> T:
    """Inverse of :func:`to_dict` for flat or nested dataclasses; unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"{config_cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {}
    hints = _resolved_hints(config_cls)
    for key, value in data.items():
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif hint is Path or (isinstance(hint, type) and issubclass(hint, Path)):
            value = Path(value)
        elif isinstance(value, list) and getattr(hint, "__origin__", None) is tuple:
            value = tuple(value)
        kwargs[key] = value
    return config_cls(**kwargs)


def _resolved_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to no conversion
        return {}


def save_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (temporary file in the same folder, then rename)."""
    from liftgs.files import atomic_write

    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
