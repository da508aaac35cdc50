"""``liftgs push MODEL REPO_ID``: upload a LIFT-GS model (weights, its run's config, a generated
model card) to a Hugging Face model repo (:func:`liftgs.hub.push_to_hub`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from liftgs.hub import is_repo_id


@dataclass
class PushConfig:
    """``liftgs push MODEL REPO_ID``: upload a LIFT-GS model with a generated model card."""

    model: str
    """a run, checkpoint or model folder, or a shipped model's name"""
    repo_id: str
    """the Hugging Face model repo to create or update, owner/name"""
    private: bool = False
    """create the repo private (an existing repo keeps its visibility)"""
    revision: str | None = None
    """branch to commit to (default: main)"""
    message: str = "Upload LIFT-GS model"
    token_file: Path | None = None
    """a file holding the access token; default: huggingface_hub's stored login (`huggingface-cli login`)"""

    def __post_init__(self) -> None:
        if not is_repo_id(self.repo_id):
            raise ValueError(f"REPO_ID must be a Hugging Face repo id (owner/name), got {self.repo_id!r}")
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise FileNotFoundError(f"--token-file {self.token_file}: no such file")


def main(argv: list[str] | None = None) -> int:
    """The command: load the model (checks its checksum), upload it with its card, print the commit."""
    from liftgs.config import name_positional, parse_cli
    from liftgs.models import load_model

    argv = name_positional(list(sys.argv[1:] if argv is None else argv), "--model", "--repo-id")
    cfg = parse_cli(PushConfig, argv, prog="liftgs push", description=PushConfig.__doc__)
    model = load_model(cfg.model)
    if not hasattr(model, "push_to_hub"):
        raise ValueError(f"{cfg.model}: only LIFT-GS models are pushed with a model card (this is a "
                         f"{type(model).__name__})")
    token = Path(cfg.token_file).read_text().strip() if cfg.token_file is not None else None
    commit = model.push_to_hub(cfg.repo_id, token=token, private=cfg.private or None, revision=cfg.revision,
                               commit_message=cfg.message)
    print(f"pushed {cfg.model} to {cfg.repo_id}: {getattr(commit, 'commit_url', commit)}")
    return 0
