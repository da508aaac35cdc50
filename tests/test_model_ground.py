"""``LiftGS.ground``: the one-call Python API ranks masks exactly as ``liftgs ground`` does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liftgs.testing import fabricate_scene


@pytest.fixture(scope="module")
def room():
    scene, _ = fabricate_scene("api_room", seed=3)
    return scene


def test_model_ground_equals_the_command(room, tmp_path):
    """The shipped fine-tuned model, its recorded text encoder (MiniLM) loaded by itself: the
    same masks, scores and boxes as `liftgs ground` on the same points, for two phrases."""
    from liftgs.ground import GroundConfig, run_ground
    from liftgs.io.ply import write_point_cloud
    from liftgs.models import load_model

    model = load_model("liftgs-tiny-finetuned")
    phrases = ["the red chair", "a table"]
    results = model.ground(room.points, room.colors, phrases, top_k=2)
    assert len(results) == 2 and model._text_encoders[None].name == "minilm"
    cloud = tmp_path / "room.ply"
    write_point_cloud(cloud, room.points, room.colors)
    for phrase, result in zip(phrases, results):
        ref = run_ground(GroundConfig(scene=cloud, phrase=phrase, checkpoint="liftgs-tiny-finetuned", top_k=2,
                                      views=0, out=tmp_path / phrase.replace(" ", "_")), model=model,
                         text_encoder=model._text_encoders[None])
        assert result.masks.shape == (len(ref.scores), len(room.points)) and len(ref.scores) >= 1
        np.testing.assert_array_equal(result.masks, ref.masks)
        np.testing.assert_allclose(result.scores, ref.scores)
        np.testing.assert_allclose(result.boxes, ref.boxes)
        np.testing.assert_array_equal(result.point_mask_ids, ref.point_mask_ids)
    # torch inputs, a given encoder object and options; the train/eval state is kept
    model.train()
    again = model.ground(torch.from_numpy(room.points), torch.from_numpy(room.colors), "the red chair", top_k=2,
                         text_encoder=model._text_encoders[None])
    assert model.training
    np.testing.assert_array_equal(again[0].masks, results[0].masks)


def test_model_ground_checks_its_inputs(room):
    from liftgs.models.liftgs import ModelConfig, build_liftgs
    from liftgs.text import load_text_encoder

    torch.manual_seed(0)
    model = build_liftgs(ModelConfig.tiny(text_dim=32))
    enc = load_text_encoder("hash-32")
    out = model.ground(room.points, room.colors, ["a chair"], text_encoder=enc, mode="phrase")
    assert out[0].masks.shape[1] == len(room.points) and out[0].boxes.shape[1] == 6
    cases = [((room.points[:, :2], room.colors), "must both be \\[P, 3\\]"),
             ((room.points, room.colors * 255), "colors must lie in \\[0, 1\\]"),
             ((room.points[:0], room.colors[:0]), "empty")]
    for (pts, cols), match in cases:
        with pytest.raises(ValueError, match=match):
            model.ground(pts, cols, ["a chair"], text_encoder=enc)
    with pytest.raises(ValueError, match="phrase is empty"):
        model.ground(room.points, room.colors, ["a chair", " "], text_encoder=enc)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.ground(room.points, room.colors, "a chair", text_encoder=enc, mode="fast")
    with pytest.raises(ValueError, match="gives 384-d vectors"):
        model.ground(room.points, room.colors, "a chair", text_encoder=load_text_encoder("hash-384"))
