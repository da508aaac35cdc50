"""Tiny randomly initialised SAM / CLIP checkpoints for tests and smoke runs.

No real SAM or CLIP weights exist on this kind of machine (nothing is downloaded at run
time), so the SAM+CLIP code path is exercised end to end with checkpoints of the same
architectures built from small configs, saved with ``save_pretrained`` and loaded back
through the normal offline loaders. Their outputs are meaningless; their shapes are not.
Weights are a function of ``seed`` alone; the caller's global RNG states are left untouched.
"""

from __future__ import annotations

from pathlib import Path

from liftgs.runtime import fork_rng


def write_tiny_sam(path: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    """A ~100k-parameter ``SamModel`` (mask-decoder weights scaled up so masks vary)."""
    from transformers import SamConfig, SamModel

    hidden = 32
    cfg = SamConfig(
        # prompt-encoder positional features are hidden/2 (num_pos_feats must match)
        vision_config=dict(hidden_size=32, output_channels=hidden, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8, window_size=4, global_attn_indexes=[1],
                           num_pos_feats=hidden // 2, mlp_dim=64, initializer_range=0.5),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=image_size, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32),
        initializer_range=1.0,
    )
    path = Path(path)
    with fork_rng(seed):  # seeded weights; the caller's RNG states are left as they were
        SamModel(cfg).save_pretrained(path)
    return path


def _byte_vocab(*specials: str) -> dict[str, int]:
    """Byte-level BPE vocabulary without merges (one token per character) plus ``specials``."""
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for tok in specials:
        vocab[tok] = len(vocab)
    return vocab


def write_tiny_clip(path: str | Path, image_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` plus a byte-level CLIP tokenizer (no merges) in one folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path = Path(path)
    vocab = _byte_vocab("<|startoftext|>", "<|endoftext|>")
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.save_pretrained(path)
    cfg = CLIPConfig(
        # bos/eos must be ids inside this tiny vocabulary (the pooled token is found via eos)
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=image_size, patch_size=8),
        projection_dim=projection_dim,
    )
    with fork_rng(seed):
        CLIPModel(cfg).save_pretrained(path)
    return path


# A minimal chat template: the image placeholder, the instruction, then the answer cue.
_CHAT_TEMPLATE = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                  "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
                  "{% if add_generation_prompt %} answer:{% endif %}")


def write_tiny_captioner(path: str | Path, seed: int = 0) -> Path:
    """A tiny LLaVA (CLIP vision tower + Llama text model) with processor and chat template.

    Exercises :class:`~liftgs.teachers.caption.HFCaptioner` through ``AutoProcessor`` /
    ``AutoModelForImageTextToText`` exactly as a real checkpoint would; it generates noise.
    """
    from transformers import (CLIPImageProcessor, CLIPTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    path = Path(path)
    vocab = _byte_vocab("<|startoftext|>", "<|endoftext|>", "<image>")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=_CHAT_TEMPLATE,
                               patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    eos = vocab["<|endoftext|>"]
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                                bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos),
        image_token_index=vocab["<image>"], vision_feature_layer=-1,
    )
    with fork_rng(seed):
        LlavaForConditionalGeneration(cfg).save_pretrained(path)
    processor.save_pretrained(path)
    return path
