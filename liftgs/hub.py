"""Model folders by Hugging Face repo id, read from the local Hugging Face cache.

A LIFT-GS / GenSplat model folder (``config.json`` + ``*.safetensors``, :meth:`save_pretrained`)
may live in a Hugging Face model repository. :func:`hub_model_dir` finds its snapshot in the
cache that ``huggingface_hub`` keeps (``<cache>/models--<owner>--<name>/snapshots/<commit>/``,
``cache_dir`` or huggingface_hub's default), through huggingface_hub's own
``snapshot_download``. Whether the network may be used is an argument, ``local_files_only``,
True by default: nothing is downloaded unless a caller asks, and no environment variable is read
or set here.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["HubModelNotFound", "is_repo_id", "hub_model_dir", "local_or_hub"]


class HubModelNotFound(FileNotFoundError):
    """A repo id whose snapshot is not in the Hugging Face cache (or cannot be fetched)."""

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def is_repo_id(name: str | Path) -> bool:
    """``owner/name`` as the Hub spells repo ids (no leading ``.`` / ``/``, one slash)."""
    text = str(name)
    return bool(_REPO_ID.fullmatch(text)) and ".." not in text and not text.endswith((".", "-"))


def hub_model_dir(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
                  local_files_only: bool = True) -> Path:
    """The snapshot folder of ``repo_id`` (at ``revision``, default its ``main`` ref) in the
    Hugging Face cache. With ``local_files_only=False`` a missing snapshot is downloaded.
    A repo that is not there is a one-line :class:`HubModelNotFound`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if not is_repo_id(repo_id):
        raise HubModelNotFound(f"{repo_id!r} is not a Hugging Face repo id (owner/name)")
    where = str(cache_dir) if cache_dir is not None else "the default Hugging Face cache"
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=None if cache_dir is None else str(cache_dir),
                                   local_files_only=local_files_only)
    except LocalEntryNotFoundError:
        raise HubModelNotFound(f"{repo_id}{'@' + revision if revision else ''}: not in {where}; fetch it once with "
                              f"`huggingface-cli download {repo_id}` (or pass local_files_only=False)") from None
    except (HFValidationError, OSError) as err:
        raise HubModelNotFound(f"{repo_id}: {' '.join(str(err).split())[:300]}") from None
    return Path(folder)


def local_or_hub(path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                 local_files_only: bool = True) -> Path:
    """``path`` itself when it exists or is not shaped like a repo id, else the repo's snapshot
    folder (:func:`hub_model_dir`): a local folder of that name wins over the Hub."""
    path = Path(path)
    if path.exists() or not is_repo_id(path):
        return path
    return hub_model_dir(str(path), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
