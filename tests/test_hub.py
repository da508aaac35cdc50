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


class RecordingApi:
    """Stands in for huggingface_hub.HfApi (no network here): records the calls and the files
    of the uploaded folder."""

    def __init__(self):
        self.calls, self.files = [], {}

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, repo_id, folder_path, **kw):
        from pathlib import Path

        self.calls.append(("upload_folder", repo_id, kw))
        self.files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return "commit"


def test_push_to_hub_uploads_weights_run_config_and_a_card(tmp_path, monkeypatch):
    """A model loaded from a run: the upload holds config.json, the weights, the run's config and
    a model card huggingface_hub parses; laid out as a cache snapshot it loads back by repo id."""
    import json

    from huggingface_hub import ModelCard

    torch.manual_seed(1)
    model = build_liftgs(ModelConfig.tiny(text_dim=16, preset="tiny", text_encoder="hash-16", recipe="finetune"))
    model.save_pretrained(tmp_path / "run" / "model")
    (tmp_path / "run" / "config.json").write_text(json.dumps(
        {"recipe": "finetune", "finetune": {"steps": 7, "task": "refer"}, "num_scenes": 3, "text_encoder": "hash-16"}))
    loaded = LiftGS.from_pretrained(tmp_path / "run" / "model")
    api = RecordingApi()
    assert loaded.push_to_hub("someone/pushed", private=True, api=api) == "commit"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][2]["private"] is True and api.calls[0][2]["exist_ok"] is True
    assert set(api.files) == {"config.json", "model.safetensors", "run_config.json", "README.md"}
    card = ModelCard(api.files["README.md"].decode())
    assert card.data.library_name == "liftgs" and "gaussian-splatting" in card.data.tags
    for text in ("`hash-16`", "| training steps | 7 |", "| fine-tuning task | refer |",
                 'LiftGS.from_pretrained("someone/pushed")', "--checkpoint someone/pushed"):
        assert text in card.text, text
    upload = tmp_path / "upload"
    upload.mkdir()
    for name, data in api.files.items():
        (upload / name).write_bytes(data)
    hf_cache(tmp_path / "cache", "someone/pushed", upload)
    monkeypatch.chdir(tmp_path)
    back = LiftGS.from_pretrained("someone/pushed", cache_dir=tmp_path / "cache")
    for (name, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    assert back.config.text_encoder == "hash-16" and back.config.recipe == "finetune"
    with pytest.raises(ValueError, match="not a Hugging Face repo id"):
        loaded.push_to_hub("no-slash", api=api)


def test_push_command(tmp_path, monkeypatch, cli_error):
    """`liftgs push MODEL REPO_ID`: the token from --token-file reaches the Hub client, the upload
    holds the card; a bad repo id or a missing token file is one line, before anything loads."""
    import huggingface_hub

    from liftgs.cli import main as cli_main

    torch.manual_seed(2)
    folder = build_liftgs(ModelConfig.tiny(text_dim=16)).save_pretrained(tmp_path / "m")
    made = []

    class Api(RecordingApi):
        def __init__(self, token=None):
            super().__init__()
            self.token = token
            made.append(self)

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    (tmp_path / "token").write_text("hf_secret\n")
    assert cli_main(["push", str(folder), "someone/pushed", "--private", "--token-file", str(tmp_path / "token")]) == 0
    api = made[-1]
    assert api.token == "hf_secret" and api.calls[0][2]["private"] is True
    assert {"config.json", "model.safetensors", "README.md"} <= set(api.files)
    assert "REPO_ID must be a Hugging Face repo id" in cli_error(["push", str(folder), "no-slash"])
    assert "no such file" in cli_error(["push", str(folder), "someone/x", "--token-file", str(tmp_path / "none")])
