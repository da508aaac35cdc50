"""The trained weights shipped in liftgs/weights load by name, pass their checksum, and say how
they were trained (which decides how `liftgs ground` ranks their masks)."""

from __future__ import annotations

import json

import pytest

from liftgs.weights import FINETUNED, PRETRAINED, SHIPPED, shipped_model_dir


@pytest.mark.parametrize("name, recipe, mode", [(PRETRAINED, "pretrain", "zero-shot"),
                                                (FINETUNED, "finetune", "expression")])
def test_shipped_model_loads_by_name(name, recipe, mode):
    from pathlib import Path

    from liftgs.ground import GroundConfig
    from liftgs.models.liftgs.grounding import resolve_mode
    from liftgs.models import load_model, model_family
    from liftgs.train.checkpoint import resolve_model_dir

    folder = resolve_model_dir(name)  # a name, not a path
    assert folder == shipped_model_dir(name) and model_family(folder) == "liftgs"
    model = load_model(name)  # checks the weights' sha256 in config.json
    assert model.text_dim == 384  # the default MiniLM text encoder
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert (folder / "model.safetensors").stat().st_size < 50 * 2**20
    run = json.loads((folder / "run_config.json").read_text())
    assert run["recipe"] == recipe
    assert resolve_mode(GroundConfig(scene=Path("."), phrase="a chair", checkpoint=Path(name)), folder) == mode


def test_unknown_shipped_name():
    with pytest.raises(ValueError, match="no shipped model"):
        shipped_model_dir("liftgs-huge")
    assert set(SHIPPED) == {PRETRAINED, FINETUNED}
