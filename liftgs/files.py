"""Atomic file-system helpers shared by every writer (scenes, datasets, caches, runs)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def replace_dir(src: str | Path, dest: str | Path) -> None:
    """Move the finished folder ``src`` to ``dest`` (same file system).

    An existing ``dest`` is swapped out first and deleted only once ``src`` is in place; if the
    final rename fails, the old ``dest`` is put back. Readers never see a half-written folder.
    """
    src, dest = Path(src), Path(dest)
    if not dest.exists():
        os.replace(src, dest)
        return
    trash = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    os.replace(dest, trash / dest.name)
    try:
        os.replace(src, dest)
    except BaseException:
        os.replace(trash / dest.name, dest)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder next to ``path`` to write into; when the block ends without error it
    replaces ``path`` (:func:`replace_dir`), otherwise it is removed. Readers see the old folder
    or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; when the block ends without error
    the file is flushed, synced and renamed over ``path``, otherwise it is removed. Readers see
    the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
