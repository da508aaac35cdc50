"""liftgs.text: the MiniLM default (real weights, offline), CLIP text on a tiny checkpoint, caching."""

from __future__ import annotations

import pytest
import torch

from liftgs.text import (ClipTextEncoder, HashingTextEncoder, SentenceEncoder, TextEncoder, load_text_encoder,
                         minilm_path, tokens_in_span)

PHRASES = ["a red chair", "the crimson seat", "a blue table"]


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


def test_minilm_semantics(minilm):
    """A synonym paraphrase is closer than a different object of another colour."""
    enc = minilm.encode(PHRASES)
    sim = enc.pooled @ enc.pooled.T
    assert isinstance(minilm, TextEncoder) and isinstance(minilm, SentenceEncoder)
    assert minilm.dim == 384 and enc.pooled.shape == (3, 384)
    assert sim[0, 1] > sim[0, 2] + 0.1
    torch.testing.assert_close(enc.pooled.norm(dim=1), torch.ones(3))


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    texts = PHRASES + ["the small lamp to the left of the sofa near the window"]
    ref = torch.as_tensor(st.encode(texts, normalize_embeddings=True))
    torch.testing.assert_close(minilm.encode(texts).pooled, ref, atol=1e-5, rtol=1e-5)


def test_minilm_tokens_and_spans(minilm):
    text = "the crimson seat next to it"
    enc = minilm.encode([text, ""])
    spans = enc.spans[0]
    assert [text[a:b] for a, b in spans] == ["the", "crimson", "seat", "next", "to", "it"]
    assert enc.tokens[0].shape == (len(spans), 384)
    torch.testing.assert_close(enc.tokens[0].norm(dim=1), torch.ones(len(spans)))
    assert enc.tokens[1].shape == (0, 384) and enc.spans[1] == []
    assert tokens_in_span(spans, 4, 16) == [1, 2]  # "crimson seat"


def test_minilm_offsets_for_word_pieces(minilm):
    text = "an ottoman-like footstool"
    enc = minilm.encode([text])
    pieces = [text[a:b] for a, b in enc.spans[0]]
    assert "".join(pieces) == text.replace(" ", "")
    assert all(0 <= a < b <= len(text) for a, b in enc.spans[0])


def test_cache_encodes_each_phrase_once():
    enc = HashingTextEncoder(dim=8, batch_size=2)
    first = enc.encode(["a", "b c", "a", "d"])
    assert enc.num_encoded == 3
    again = enc.encode(["d", "b c", "e"])
    assert enc.num_encoded == 4
    torch.testing.assert_close(again.pooled[0], first.pooled[3])
    assert first.spans[1] == [(0, 1), (2, 3)]
    small = HashingTextEncoder(dim=8, cache_size=1)
    small.encode(["x", "y", "x"])
    assert small.num_encoded == 2 and len(small._cache) == 1


def test_encode_rejects_bare_string():
    with pytest.raises(TypeError, match="list of strings"):
        HashingTextEncoder().encode("a red chair")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_text_encoder("no-such-org/no-such-model")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_text_encoder(tmp_path / "x")
    assert load_text_encoder("hash-16").dim == 16


def test_clip_text_encoder_tiny(tmp_path):
    from liftgs.testing import write_tiny_clip

    path = write_tiny_clip(tmp_path / "clip", projection_dim=16)
    enc = load_text_encoder(path)
    assert isinstance(enc, ClipTextEncoder) and enc.dim == 16
    out = enc.encode(["a red chair", "the crimson seat next to it"])
    assert out.pooled.shape == (2, 16)
    torch.testing.assert_close(out.pooled.norm(dim=1), torch.ones(2))
    # byte-level tokenizer without merges: one token per character, specials left out
    assert [s for s in out.spans[0]][:2] == [(0, 1), (2, 3)]
    assert out.tokens[0].shape == (len("aredchair"), 16)
    # pooled vector = projected end-of-text state, computed independently here
    tok = enc.tokenizer(["a red chair"], return_tensors="pt")
    hidden = enc.model.text_model(**tok).last_hidden_state[0, -1]
    ref = torch.nn.functional.normalize(enc.model.text_projection(hidden), dim=0)
    torch.testing.assert_close(out.pooled[0], ref)
