"""Atomic file-system helpers shared by every writer (scenes, datasets, caches, runs)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


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
