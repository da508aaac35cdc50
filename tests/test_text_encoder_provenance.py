"""The text encoder travels with the model: pre-training records the pseudo-labels' encoder in
the model's config.json, and fine-tuning, eval and ground load it with no flag; a flag naming
another model is a one-line error naming both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LOOSE_SAM = ["--sam.points-per-side", "4", "--sam.pred-iou-thresh", "-1e9", "--sam.stability-thresh", "0",
             "--sam.min-region-area", "4", "--sam.nms-thresh", "0.9"]


def test_labels_name_their_encoder():
    from liftgs.teachers.store import text_encoder_of

    assert text_encoder_of({"teacher": "synthetic", "settings": {"text_encoder": "minilm"}}) == "minilm"
    assert text_encoder_of({"teacher": "samclip", "settings": {"segmenter": {}, "clip": "/m/clip"}}) == "/m/clip"
    assert text_encoder_of({"teacher": "x"}) is None and text_encoder_of({}) is None


def test_choose_text_encoder(tmp_path):
    from liftgs.models.provenance import choose_text_encoder

    assert choose_text_encoder(None, None, "m") == "minilm"
    assert choose_text_encoder(None, "hash-16", "m") == "hash-16"
    assert choose_text_encoder("hash-16", "hash-16", "m") == "hash-16"
    assert choose_text_encoder("minilm", None, "m") == "minilm"  # nothing recorded: the flag
    assert choose_text_encoder(str(tmp_path), "org/clip", "m") == str(tmp_path)  # a local copy
    with pytest.raises(ValueError, match=r"--text-encoder 'minilm' is not the text encoder m was trained "
                                         r"with \('hash-16'"):
        choose_text_encoder("minilm", "hash-16", "m")


def test_recorded_text_encoder_reads_model_then_run_config(tmp_path):
    from types import SimpleNamespace

    from liftgs.models.provenance import recorded_text_encoder

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"family": "liftgs"}))
    assert recorded_text_encoder(run / "model") is None
    (run / "config.json").write_text(json.dumps({"recipe": "finetune", "text_encoder": "hash-8"}))
    assert recorded_text_encoder(run / "model") == "hash-8"  # older folders: the run's record
    (run / "model" / "config.json").write_text(json.dumps({"family": "liftgs", "text_encoder": "hash-4"}))
    assert recorded_text_encoder(run / "model") == "hash-4"
    model = SimpleNamespace(config=SimpleNamespace(text_encoder="hash-2"))
    assert recorded_text_encoder(run / "model", model) == "hash-2"
    assert recorded_text_encoder(None) is None


def test_samclip_pretrain_finetune_eval_chain_needs_no_encoder_flag(tmp_path, cli_error, capsys):
    """Tiny random SAM + CLIP label the rooms; pre-training records the CLIP folder; fine-tuning
    (--init), eval and ground run without --text-encoder and use CLIP's text tower."""
    from liftgs.cli import main as cli_main
    from liftgs.testing import write_rooms, write_tiny_clip, write_tiny_sam

    root = write_rooms(tmp_path / "rooms")
    sam, clip = write_tiny_sam(tmp_path / "sam"), write_tiny_clip(tmp_path / "clip", projection_dim=16)
    labels = tmp_path / "labels"
    assert cli_main(["pseudolabel", "--scenes", str(root / "data"), "--teacher", "samclip", "--sam-model", str(sam),
                     "--clip-model", str(clip), "--out", str(labels), "--min-area", "0", "--no-progress",
                     *LOOSE_SAM]) == 0
    common = ["--steps", "2", "--batch-size", "1", "--ckpt-every", "2", "--no-tensorboard", "--no-progress"]
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    assert cli_main(["pretrain", "--data", str(root / "data"), "--labels", str(labels), "--out", str(pre),
                     "--image-size", "32", "--num-pixels", "0", "--losses", "ground+rgb+feat", *common]) == 0
    model_cfg = json.loads((pre / "model" / "config.json").read_text())
    assert model_cfg["text_encoder"] == str(clip) and model_cfg["text_dim"] == 16
    assert model_cfg["recipe"] == "pretrain" and model_cfg["preset"] == "tiny"

    assert cli_main(["finetune", "--data", str(root / "data"), "--init", str(pre), "--out", str(fine),
                     *common]) == 0
    run_cfg = json.loads((fine / "config.json").read_text())
    assert run_cfg["text_encoder"] == str(clip)
    model_cfg = json.loads((fine / "model" / "config.json").read_text())
    assert model_cfg["text_encoder"] == str(clip) and model_cfg["recipe"] == "finetune"

    out = tmp_path / "eval"
    assert cli_main(["eval", "--checkpoint", str(fine), "--data", str(root / "data"), "--out", str(out)]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["grounding"] and results["instseg"]
    scene = root / "data" / "room3"
    assert cli_main(["ground", str(scene), "the red chair", "--checkpoint", str(fine),
                     "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "grounding.json").is_file()

    capsys.readouterr()
    err = cli_error(["eval", "--checkpoint", str(fine), "--data", str(root / "data"), "--out", str(tmp_path / "e2"),
                     "--text-encoder", "hash-16"])
    assert "'hash-16' is not the text encoder" in err and str(clip) in err
    assert not (tmp_path / "e2").exists()


def test_labels_of_two_encoders_are_refused(dataset, tmp_path):
    """One root, two teachers' encoders: pre-training stops before building anything."""
    import shutil

    from liftgs.io.errors import DataError
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.recipes.pretrain_data import PretrainDataset
    from liftgs.teachers.store import PseudoLabelStore

    labels = tmp_path / "labels"
    shutil.copytree(dataset / "labels", labels)
    store = PseudoLabelStore(labels)
    for i, scene in enumerate(store.scenes()):
        for frame in store.frames(scene):
            lab = store.get(scene, frame)
            lab.provenance = {"teacher": "synthetic", "settings": {"text_encoder": f"hash-{i % 2}"}}
            store.put(scene, frame, lab)
    ds = PretrainDataset(scene_paths(Path(dataset / "data"), "train"), labels, seed=0, image_size=24)
    with pytest.raises(DataError, match="were embedded by 'hash-0' and those of .* by 'hash-1'"):
        ds.text_encoder()
