"""Model folders by Hugging Face repo id, read from a temporary cache laid out as huggingface_hub
lays out its cache (refs, snapshots of symlinks into content-addressed blobs); no network."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from liftgs.hub import HubModelNotFound, hub_model_dir, is_repo_id
from liftgs.models import load_model
from liftgs.models.liftgs import LiftGS, ModelConfig, build_liftgs
from liftgs.train.checkpoint import resolve_model_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(root, repo_id: str, folder) -> None:
    """``folder``'s files as huggingface_hub caches a snapshot of ``repo_id`` at ``COMMIT``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    model = build_liftgs(ModelConfig.tiny(text_dim=16))
    folder = model.save_pretrained(root / "upload")
    hf_cache(root / "cache", "someone/liftgs-tiny", folder)
    return root / "cache", model


def test_from_pretrained_by_repo_id(cached, monkeypatch, tmp_path):
    cache, model = cached
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    loaded = LiftGS.from_pretrained("someone/liftgs-tiny", cache_dir=cache)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    folder = hub_model_dir("someone/liftgs-tiny", cache_dir=cache)
    assert folder.name == COMMIT and (folder / "config.json").is_file()
    assert resolve_model_dir("someone/liftgs-tiny", cache_dir=cache) == folder
    assert isinstance(load_model("someone/liftgs-tiny", cache_dir=cache, revision="main"), LiftGS)


def test_missing_repo_is_one_line_and_nothing_is_fetched(cached, monkeypatch, tmp_path):
    cache, _ = cached
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubModelNotFound, match=r"someone/absent: not in .*huggingface-cli download") as err:
        LiftGS.from_pretrained("someone/absent", cache_dir=cache)
    assert "\n" not in str(err.value) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(HubModelNotFound, match="someone/liftgs-tiny@v2: not in"):
        hub_model_dir("someone/liftgs-tiny", cache_dir=cache, revision="v2")


def test_repo_id_shapes(tmp_path, monkeypatch):
    assert is_repo_id("owner/name") and is_repo_id("Org-1/model_v2.0")
    for bad in ("name", "./owner/name", "/abs/path", "a/b/c", "owner/../x", "owner/", "runs/x/"):
        assert not is_repo_id(bad), bad
    # a local folder of that name wins over the Hub
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    build_liftgs(ModelConfig.tiny(text_dim=16)).save_pretrained(tmp_path / "owner" / "name")
    assert resolve_model_dir("owner/name").resolve() == (tmp_path / "owner" / "name").resolve()
