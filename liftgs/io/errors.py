"""Errors raised by the data layer.

Every loader turns a bad input (missing or truncated file, NaN pose, empty point cloud,
mismatched image sizes, unknown category) into one :class:`DataError` naming the file and the
problem, so a user converting a 1,500-scan dataset knows which file to look at.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError", "DataWarning", "data_error"]


class DataError(ValueError):
    """Bad input data. ``path`` is the offending file (or folder) when known."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class DataWarning(UserWarning):
    """Input that is usable but partly left out (a scene without labels, an expression whose
    target has no points); the message names what was left out. ``liftgs`` prints it on one line."""


def data_error(path: str | Path, problem: str, cause: BaseException | None = None) -> DataError:
    """A :class:`DataError` for ``path``; ``cause`` (if any) is summarised in the message."""
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    return DataError(f"{problem}{detail}", path)
