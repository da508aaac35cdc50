"""Model folders by Hugging Face repo id: read from the local Hugging Face cache, pushed with a
generated model card.

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

__all__ = ["HubModelNotFound", "is_repo_id", "hub_model_dir", "local_or_hub", "model_card", "push_to_hub"]


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


CARD_TAGS = ["liftgs", "3d", "visual-grounding", "point-cloud", "gaussian-splatting"]


def model_card(model, run_config: dict | None = None, repo_id: str | None = None) -> str:
    """A Hugging Face model card (README.md with YAML metadata) for a LIFT-GS model: what it is,
    what it was trained with (preset, recipe, text encoder, steps and scenes from its run's
    config when known) and how to load it and ground a phrase."""
    from huggingface_hub import ModelCard, ModelCardData

    cfg = model.config
    run = run_config or {}
    settings = run.get(run.get("recipe", ""))
    settings = settings if isinstance(settings, dict) else {}
    encoder = cfg.text_encoder or (run.get("text_encoder") if isinstance(run.get("text_encoder"), str) else None)
    rows = [("model family", "LIFT-GS (point cloud + phrase -> 3D Gaussians and 3D masks)"),
            ("size preset", cfg.preset or settings.get("preset") or "not recorded"),
            ("last training recipe", cfg.recipe or run.get("recipe") or "not recorded"),
            ("text encoder (query vectors)", f"`{encoder}`" if encoder else "not recorded"),
            ("query width", str(cfg.text_dim)), ("mask proposals", str(cfg.num_queries)),
            ("voxel size", f"{cfg.voxel_size} m")]
    if "steps" in settings:
        rows.append(("training steps", str(settings["steps"])))
    if "num_scenes" in run:
        rows.append(("training scenes", str(run["num_scenes"])))
    if settings.get("task"):
        rows.append(("fine-tuning task", str(settings["task"])))
    name = repo_id or "OWNER/NAME"
    table = "\n".join(["| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows]])
    data = ModelCardData(library_name="liftgs", tags=CARD_TAGS)
    body = f"""
# {name.split("/")[-1]}

A LIFT-GS model for the `liftgs` Python library (`pip install liftgs`): from a point cloud of
a room (metres, z up, colours in [0, 1]) and a phrase such as "the black chair next to the
table", it predicts 3D Gaussians and 3D masks and ranks the masks for the phrase.

{table}

The text encoder is part of the model's contract: queries are its vectors, and `liftgs` loads
the recorded one unless told otherwise.

## Use

```python
from liftgs.models.liftgs import LiftGS

# from the local Hugging Face cache
model = LiftGS.from_pretrained("{name}")
result = model.ground(points, colors, ["the black chair next to the table"])[0]
# masks [k, P] bool, scores [k], boxes [k, 6] (min xyz, max xyz), best first
result.masks, result.scores, result.boxes
```

```bash
# once: liftgs never downloads at run time
huggingface-cli download {name}
liftgs ground SCENE "the black chair next to the table" --checkpoint {name}
```

Files: `config.json` (model config with the weights' sha256, checked on load),
`model.safetensors`{", `run_config.json` (the training run's settings)" if run_config else ""}.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def push_to_hub(model, repo_id: str, *, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload LIFT-GS model",
                api=None):
    """Upload ``model`` (its weights and config, its run's config when it was loaded from a
    run, and a generated :func:`model_card`) to the Hugging Face model repo ``repo_id``,
    creating the repo when needed. ``api``: a ``huggingface_hub.HfApi`` (default: one with
    ``token``; None uses huggingface_hub's stored login). Returns the commit info."""
    import tempfile

    from liftgs.config import save_json_atomic
    from liftgs.files import atomic_write
    from liftgs.models.provenance import RUN_CONFIG_COPY, run_configs

    if not is_repo_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hugging Face repo id (owner/name)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    source = getattr(model, "source_dir", None)
    run_config = next(run_configs(source), None) if source is not None else None
    with tempfile.TemporaryDirectory(prefix="liftgs-push-") as tmp:
        folder = model.save_pretrained(Path(tmp) / "model")
        if run_config is not None:
            save_json_atomic(folder / RUN_CONFIG_COPY, run_config)
        with atomic_write(folder / "README.md", "w") as fh:
            fh.write(model_card(model, run_config, repo_id))
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 revision=revision, commit_message=commit_message)
