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


def name_positional(argv: list[str], *flags: str) -> list[str]:
    """``argv`` with its leading positional words named by ``flags``: ``SCENE PHRASE ...``
    becomes ``--scene SCENE --phrase PHRASE ...`` when there is a word (not starting with ``-``)
    for every flag; otherwise ``argv`` as it is."""
    n = len(flags)
    if len(argv) >= n and not any(a.startswith("-") for a in argv[:n]):
        return [x for flag, word in zip(flags, argv) for x in (flag, word)] + list(argv[n:])
    return list(argv)


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


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file, bad JSON or a non-object is a ConfigError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def update_config(base: T, data: dict[str, Any], source: str, prefix: str = "") -> T:
    """``base`` with the fields named in ``data`` (JSON values, e.g. from :func:`to_dict`) replaced.

    Nested dataclasses are updated field by field, so a file may hold only some settings.
    Unknown fields, values of the wrong type and values ``__post_init__`` rejects raise a
    one-line ConfigError naming ``source`` and the dotted field (``prefix`` + name).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a JSON object, "
                          f"got {_json_type(data)}")
    names = {f.name for f in dataclasses.fields(base)}
    hints = _resolved_hints(type(base))
    changes = {}
    for key, value in data.items():
        name = prefix + key
        if key not in names:
            raise ConfigError(f"{source}: unknown field {name!r} (not a setting of {type(base).__name__})")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            changes[key] = update_config(current, value, source, name + ".")
        else:
            changes[key] = _json_value(hints.get(key, Any), value, source, name)
    try:
        return dataclasses.replace(base, **changes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def _json_value(hint: Any, value: Any, source: str, name: str) -> Any:
    """``value`` read from JSON as type ``hint`` (Paths from strings, tuples from lists)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _json_value(option, value, source, name)
            except ConfigError:
                continue
    elif origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: {name} must be one of {list(args)}, got {value!r}")
    elif origin in (tuple, list):
        if isinstance(value, list):
            return origin(value)
        raise ConfigError(f"{source}: {name} must be a list, got {_json_type(value)} {value!r}")
    elif hint is Any or not isinstance(hint, type):
        return value
    elif issubclass(hint, Path) and isinstance(value, str):
        return Path(value)
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {name} must be {_type_name(hint)}, got {_json_type(value)} {value!r}")


def _type_name(hint: Any) -> str:
    import typing

    args = typing.get_args(hint)
    if args and typing.get_origin(hint) is not tuple:  # a union
        return " or ".join(_type_name(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             type(None): "null"}
    if isinstance(hint, type) and issubclass(hint, Path):
        return "a path (string)"
    return names.get(hint) or str(hint).replace("typing.", "")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


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
