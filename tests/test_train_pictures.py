"""Training pictures (TensorBoard images) and optional Weights & Biases logging."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch

from helpers.recipe_configs import pretrain_config


def test_mask_panel_and_side_by_side():
    from liftgs.train.pictures import PALETTE, SEPARATOR, mask_panel, side_by_side

    masks = np.zeros((2, 4, 5), np.float32)
    masks[0, :2] = 0.9
    masks[1, 1:3] = 0.7  # row 1: both masks, mask 0 more probable
    panel = mask_panel(masks)
    assert panel.dtype == np.uint8 and panel.shape == (4, 5, 3)
    assert (panel[0] == PALETTE[0]).all() and (panel[1] == PALETTE[0]).all() and (panel[2] == PALETTE[1]).all()
    assert (panel[3] == 0).all()
    grey = mask_panel(np.zeros((0, 4, 5)), background=np.ones((4, 5, 3)))
    assert (grey == 102).all()  # a dimmed grey copy of a white frame
    both = side_by_side(panel, np.ones((4, 2, 3)))
    assert both.shape == (4, 5 + SEPARATOR + 2, 3) and (both[:, 5:5 + SEPARATOR] == 255).all()
    with pytest.raises(ValueError, match="share their height"):
        side_by_side(panel, np.ones((3, 2, 3)))


def test_pretraining_writes_pictures_without_changing_the_run(dataset, tmp_path):
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from liftgs.recipes.pretrain import run_pretrain

    kw = dict(steps=2, ckpt_every=2, losses="ground+rgb+feat", num_pixels=128)
    run_pretrain(pretrain_config(dataset, tmp_path / "plain", **kw))
    run_pretrain(pretrain_config(dataset, tmp_path / "pics", image_every=1, tensorboard=True, **kw))
    a = load_file(str(tmp_path / "plain" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "pics" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    events = EventAccumulator(str(tmp_path / "pics" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert sorted(tags) == ["pretrain/masks_pseudolabels_vs_rendered", "pretrain/rgb_frame_vs_rendered"]
    for tag in tags:
        shots = events.Images(tag)
        assert [s.step for s in shots] == [1, 2] and shots[0].height == 32 and shots[0].width > 64


class FakeWandb(types.ModuleType):
    """Records what the logger hands to wandb (the real package is optional and needs a login)."""

    def __init__(self):
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.inits, self.logged, self.finished = [], [], 0
        fake = self

        class Run:
            id = "run123"

            def log(self, data, step):
                fake.logged.append((step, data))

            def finish(self):
                fake.finished += 1

        self.Run = Run

    def init(self, **kw):
        self.inits.append(kw)
        return self.Run()

    class Image:
        def __init__(self, array):
            self.array = array


def test_wandb_logging_when_asked(dataset, tmp_path, monkeypatch):
    from liftgs.recipes.pretrain import run_pretrain

    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = dict(steps=2, ckpt_every=1, image_every=2, wandb_project="liftgs-test", wandb_mode="offline")
    run_pretrain(pretrain_config(dataset, tmp_path / "w", **cfg))
    init = fake.inits[0]
    assert init["project"] == "liftgs-test" and init["mode"] == "offline" and init["id"] is None
    assert init["config"]["recipe"] == "pretrain" and fake.finished == 1
    scalars = [d for _, d in fake.logged if "loss" in d]
    assert [s for s, d in fake.logged if "loss" in d] == [1, 2] and "ground" in scalars[0]
    images = [d for _, d in fake.logged if any(isinstance(v, FakeWandb.Image) for v in d.values())]
    assert len(images) == 1 and all(v.array.dtype == np.uint8 for v in images[0].values())
    assert (tmp_path / "w" / "wandb_id").read_text() == "run123"
    run_pretrain(pretrain_config(dataset, tmp_path / "w", resume=True, **{**cfg, "steps": 3}))
    assert fake.inits[1]["id"] == "run123" and fake.inits[1]["resume"] == "allow"


def test_wandb_without_the_package_is_refused_at_the_door(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # an import of wandb fails
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else object())
    with pytest.raises(ValueError, match="pip install wandb"):
        pretrain_config(dataset, tmp_path / "x", wandb_project="p")
    assert not (tmp_path / "x").exists()


def test_recipes_without_pictures_refuse_image_every():
    from liftgs.recipes.finetune import FinetuneConfig
    from liftgs.recipes.gensplat import GenSplatSemanticConfig

    for cls in (FinetuneConfig, GenSplatSemanticConfig):
        with pytest.raises(ValueError, match="--image-every: this recipe draws no pictures"):
            cls(image_every=10)
