"""GenSplat's stage-III reasoner on a tiny randomly initialised LLaVA built offline."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from liftgs.models.gensplat.mllm import MLLMConfig, MLLMReasoner, load_base  # noqa: E402
from liftgs.models.gensplat.reasoner import (  # noqa: E402
    MASK_WEIGHT,
    SEG_TOKEN,
    ReasonerOutput,
    alignment_loss,
    check_reasoner_inputs,
)

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "the", "chair", "is", "it", "where",
         "a", "table", "red", "blue", "lamp", "near", "window", "sure", ".", "what", "colour", "of"]
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
SEG_DIM = 12


def _build_base(folder):
    """A tiny LLaVA (2-layer Llama 32-d, 2-layer CLIP vision tower on 16 px images, 8 px patches)
    with a word-level tokenizer and a CLIP image processor, saved to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.clip import CLIPImageProcessorPil  # the torchvision-free CLIP image processor

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=16, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=0, bos_token_id=2, eos_token_id=3)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=WORDS.index("<image>"),
                         image_seq_length=4, vision_feature_layer=-1, vision_feature_select_strategy="default")
    gen = torch.Generator().manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # seeded weights without touching the global RNG
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return _build_base(tmp_path_factory.mktemp("tiny_llava"))


def _views(seed: int, v: int, h: int = 20, w: int = 24):
    return torch.rand((v, 3, h, w), generator=torch.Generator().manual_seed(seed))


def _reasoner(base_dir, seed=0):
    r = MLLMReasoner.from_base(base_dir, MLLMConfig(seg_dim=SEG_DIM, lora_rank=4, lora_dropout=0.0), seed=seed)
    return r.eval()


def _perturb(reasoner, seed=1):
    """Non-zero LoRA B matrices and moved <SEG> rows, so the adapter changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in reasoner.trainable_state().items():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)


TEXTS = ["where is the red chair", "what colour is the lamp near the window"]
ANSWERS = [f"it is {SEG_TOKEN} .", "blue"]


def test_forward_loss_and_seg_shapes(base_dir):
    r = _reasoner(base_dir)
    views = [_views(0, 2), _views(1, 3, 24, 18)]
    out = r(views, TEXTS, ANSWERS)
    assert isinstance(out, ReasonerOutput)
    assert out.text_loss is not None and out.text_loss.dim() == 0 and torch.isfinite(out.text_loss)
    assert [s.shape for s in out.segs] == [(1, SEG_DIM), (0, SEG_DIM)]
    assert out.has_seg.tolist() == [True, False]
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] hold no <SEG>"):
        _ = out.seg
    both = r(views, TEXTS, [ANSWERS[0], f"{SEG_TOKEN} and {SEG_TOKEN}"])
    assert both.seg.shape == (2, SEG_DIM)
    assert [s.shape[0] for s in both.segs] == [1, 2]
    none = r(views, TEXTS)
    assert none.text_loss is None and all(s.shape[0] == 0 for s in none.segs)


def test_gradients_reach_lora_seg_rows_and_projection_only(base_dir):
    r = _reasoner(base_dir)
    _perturb(r)
    r.train()
    out = r([_views(0, 2), _views(1, 1)], TEXTS, [ANSWERS[0], f"blue {SEG_TOKEN}"])
    (out.text_loss + out.seg.square().sum()).backward()
    trainable = r.trainable_state()
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    assert {"seg_proj.weight", "seg_proj.bias"} <= set(trainable)
    for name, p in trainable.items():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    frozen = [(n, p) for n, p in r.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for _, p in frozen)
    # LoRA sits on the language model's attention only; the vision tower has none
    assert not any("vision_tower" in n for n in trainable)
    assert any("language_model" in n and "q_proj.lora_A" in n for n in trainable)


def test_seg_states_are_the_hidden_states_that_emit_seg(base_dir):
    r = _reasoner(base_dir)
    _perturb(r)
    views = [_views(0, 2), _views(1, 1)]
    answers = [f"it is {SEG_TOKEN} . {SEG_TOKEN}", f"{SEG_TOKEN} blue"]
    out = r(views, TEXTS, answers)
    batch = r._encode(views, TEXTS, answers, left_pad=False)
    batch.pop("labels")
    with torch.no_grad():
        hidden = r.lm(**batch, output_hidden_states=True).hidden_states[-1]
    ids = batch["input_ids"]
    for b in range(2):
        where = [p for p in range(ids.shape[1]) if int(ids[b, p]) == r.seg_token_id]
        assert len(where) == answers[b].count(SEG_TOKEN)
        expected = torch.stack([hidden[b, p - 1] for p in where]) @ r.seg_proj.weight.T + r.seg_proj.bias
        torch.testing.assert_close(out.segs[b], expected)
    # a different <SEG> position in the answer gives a different state
    assert not torch.allclose(out.segs[0][0], out.segs[0][1])


def test_save_load_round_trip(base_dir, tmp_path):
    r = _reasoner(base_dir)
    _perturb(r)
    views = [_views(0, 2), _views(1, 1)]
    before = r(views, TEXTS, ANSWERS)
    fresh = _reasoner(base_dir)(views, TEXTS, ANSWERS)
    assert not torch.allclose(before.segs[0], fresh.segs[0])  # the perturbation matters
    folder = r.save_pretrained(tmp_path / "reasoner")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "reasoner.json" in files and "seg_projection.safetensors" in files
    assert "adapter/adapter_model.safetensors" in files and "adapter/adapter_config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    loaded = MLLMReasoner.from_pretrained(folder).eval()
    assert loaded.seg_token_id == r.seg_token_id
    after = loaded(views, TEXTS, ANSWERS)
    torch.testing.assert_close(after.text_loss, before.text_loss, rtol=0, atol=0)
    for a, b in zip(after.segs, before.segs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    r.save_pretrained(folder)  # overwriting a folder works too
    assert MLLMReasoner.from_pretrained(folder, base=base_dir).seg_token_id == r.seg_token_id


class _ForceSeg:
    """Logits processor: the second generated token is <SEG>, then end of sequence."""

    def __init__(self, prompt_len, seg_id, eos_id):
        self.prompt_len, self.seg_id, self.eos_id = prompt_len, seg_id, eos_id

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = {1: self.seg_id, 3: self.eos_id}.get(step)
        if forced is not None:
            scores = torch.full_like(scores, -1e9)
            scores[:, forced] = 0.0
        return scores


def test_generate_returns_text_and_generated_seg_states(base_dir):
    from transformers import LogitsProcessorList

    r = _reasoner(base_dir)
    _perturb(r)
    views, texts = [_views(0, 2), _views(1, 1)], TEXTS
    prompt_len = r._encode(views, texts, None, left_pad=True)["input_ids"].shape[1]
    gen = r.generate(views, texts, max_new_tokens=6,
                     logits_processor=LogitsProcessorList([_ForceSeg(prompt_len, r.seg_token_id,
                                                                     r.tokenizer.eos_token_id)]))
    assert len(gen.texts) == 2
    for b in range(2):
        ids = gen.token_ids[b].tolist()
        assert len(ids) == 3 and ids[1] == r.seg_token_id  # stops at the forced end of sequence
        assert SEG_TOKEN in gen.texts[b]
        assert gen.segs[b].shape == (1, SEG_DIM)
    # the generated <SEG> state equals the teacher-forced one for the same reply
    answers = [r.tokenizer.decode(g) for g in gen.token_ids]
    forced = r(views, texts, answers)
    torch.testing.assert_close(gen.seg, forced.seg, rtol=1e-4, atol=1e-5)
    plain = r.generate(views[:1], texts[:1], max_new_tokens=2)  # greedy, no <SEG> forced
    assert len(plain.token_ids[0]) <= 2 and plain.segs[0].shape[1] == SEG_DIM


def test_missing_weights_is_one_line_error(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError) as err:
        load_base(missing)
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "hf download" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        MLLMReasoner.from_base(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="reasoner.json: missing"):
        MLLMReasoner.from_pretrained(tmp_path / "empty")


def test_inputs_are_checked_at_the_door(base_dir):
    r = _reasoner(base_dir)
    ok = [_views(0, 1)]
    cases = [
        (([torch.rand(1, 4, 8, 8)], ["a"]), r"views\[0\] must have shape"),
        (([torch.rand(1, 3, 8, 8) * 2], ["a"]), r"must lie in \[0, 1\]"),
        (([torch.zeros(1, 3, 8, 8, dtype=torch.uint8)], ["a"]), "floating point"),
        ((ok, ["a", "b"]), "views has 1 samples but texts has 2"),
        ((ok, [""]), "non-empty string"),
        ((ok, [f"where is {SEG_TOKEN}"]), "reserved token"),
        ((ok, ["<image> chair"]), "reserved token"),
        (([torch.rand(33, 3, 4, 4)], ["a"]), "at most 32"),
    ]
    for args, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            r(*args)
    with pytest.raises(ValueError, match="answers has 2 samples"):
        r(ok, ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        r.generate(ok, ["a"], max_new_tokens=0)
    with pytest.raises(ValueError, match="empty batch"):
        check_reasoner_inputs([], [])


def test_construction_leaves_global_rng_alone(base_dir):
    model, processor = load_base(base_dir)
    state = torch.get_rng_state()
    MLLMReasoner(model, processor, MLLMConfig(seg_dim=SEG_DIM), seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_alignment_loss():
    text, mask = torch.tensor(2.0, requires_grad=True), torch.tensor(5.0, requires_grad=True)
    loss = alignment_loss(text, mask)
    assert MASK_WEIGHT == 0.1
    torch.testing.assert_close(loss, torch.tensor(2.5))
    loss.backward()
    assert float(text.grad) == 1.0 and float(mask.grad) == pytest.approx(0.1)
    torch.testing.assert_close(alignment_loss(text, mask, mask_weight=1.0), torch.tensor(7.0))
    assert alignment_loss(text, None) is text  # a question-answering batch: L_text alone
    with pytest.raises(ValueError, match="text_loss is None"):
        alignment_loss(None, mask)
    with pytest.raises(ValueError, match="mask_weight"):
        alignment_loss(text, mask, mask_weight=-1.0)
    with pytest.raises(ValueError, match="scalar"):
        alignment_loss(text, torch.ones(2))
