"""Caption pseudo-labels (paper Table 7, appendix A.4): segment, caption each segment with a
vision-language model, embed the captions with the text encoder.

The captioner sees the whole image with the region marked: a red box around it and the region
brightened by alpha blending (the rest dimmed), and is asked for a short description of the
marked object. Any transformers image-text-to-text checkpoint on disk can serve through
:class:`HFCaptioner`; anything with ``caption(images) -> list[str]`` works too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from liftgs.teachers.base import Segmenter
from liftgs.text.base import TextEncoder
from liftgs.types import Frame, PseudoLabels, Scene

__all__ = ["Captioner", "HFCaptioner", "CaptionTeacher", "highlight_region", "clean_caption", "CAPTION_PROMPT"]

# Our wording of the appendix A.4 instruction (same content: role, red box, highlight, brevity, examples).
CAPTION_PROMPT = (
    "You describe objects in images. The object of interest is inside the red box and is "
    "slightly highlighted. Describe that object in a few precise words, for example "
    "\"a red traffic light\" or \"the box near the wall\". Reply with the description only."
)


@runtime_checkable
class Captioner(Protocol):
    name: str

    def caption(self, images: list[np.ndarray]) -> list[str]: ...


def highlight_region(rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.35, box_px: int = 2) -> np.ndarray:
    """The captioner's view of one segment: outside dimmed by ``alpha``, red box around the mask."""
    H, W, _ = rgb.shape
    img = rgb.astype(np.float32)
    img = np.where(mask[..., None], img, img * (1.0 - alpha))
    ys, xs = np.nonzero(mask)
    out = img.round().clip(0, 255).astype(np.uint8)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    t = max(1, int(box_px))
    red = np.array([255, 0, 0], dtype=np.uint8)
    for ya, yb in ((max(y0 - t, 0), y0), (y1 + 1, min(y1 + 1 + t, H))):
        out[ya:yb, max(x0 - t, 0):min(x1 + 1 + t, W)] = red
    for xa, xb in ((max(x0 - t, 0), x0), (x1 + 1, min(x1 + 1 + t, W))):
        out[max(y0 - t, 0):min(y1 + 1 + t, H), xa:xb] = red
    return out


def clean_caption(text: str) -> str:
    """First line, without quotes, leading "Caption:" or a trailing full stop; lower-cased start."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(caption|answer|description)\s*:\s*", "", line, flags=re.I).strip()
    line = "".join(ch for ch in line if ch.isprintable()).strip("\"'` ").rstrip(".").strip()
    return line[:1].lower() + line[1:] if line else "an object"


class HFCaptioner:
    """Adapter for any local transformers image-text-to-text model (LLaVA, Llama-3.2-Vision, ...)."""

    def __init__(self, model, processor, name: str, prompt: str = CAPTION_PROMPT, max_new_tokens: int = 16) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_dir(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> "HFCaptioner":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from liftgs.text.hf import load_local

        processor, model = load_local([AutoProcessor, AutoModelForImageTextToText], path,
                                      "an image-text-to-text model")
        model = model.to(device)
        return cls(model, processor, name=str(path), **kwargs)

    def _text(self) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    @torch.no_grad()
    def caption(self, images: list[np.ndarray]) -> list[str]:
        from PIL import Image

        out = []
        text = self._text()
        device = next(self.model.parameters()).device
        for img in images:  # one at a time: prompts differ in length after image-token expansion
            inputs = self.processor(images=Image.fromarray(img), text=text, return_tensors="pt").to(device)
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = ids[0, inputs["input_ids"].shape[1]:]
            out.append(clean_caption(self.processor.decode(new, skip_special_tokens=True)))
        return out


class CaptionTeacher:
    """``teacher(frame) -> PseudoLabels`` with captions embedded by ``text_encoder`` (pooled)."""

    name = "caption"

    def __init__(self, segmenter: Segmenter, captioner: Captioner, text_encoder: TextEncoder,
                 alpha: float = 0.35) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha (dimming of the rest of the image) must be in [0, 1), got {alpha}")
        self.segmenter = segmenter
        self.captioner = captioner
        self.text_encoder = text_encoder
        self.alpha = alpha

    def settings(self) -> dict[str, Any]:
        seg = self.segmenter.settings() if hasattr(self.segmenter, "settings") else type(self.segmenter).__name__
        return {"segmenter": seg, "captioner": getattr(self.captioner, "name", type(self.captioner).__name__),
                "text_encoder": self.text_encoder.name, "alpha": self.alpha}

    def __call__(self, frame: Frame, scene: Scene | None = None) -> PseudoLabels:
        segments = np.asarray(self.segmenter(frame.rgb), dtype=np.int32)
        S = int(segments.max(initial=-1)) + 1
        views = [highlight_region(frame.rgb, segments == k, self.alpha) for k in range(S)]
        captions = [clean_caption(c) for c in self.captioner.caption(views)] if S else []
        if len(captions) != S:
            raise ValueError(f"captioner {self.captioner!r} returned {len(captions)} captions for {S} regions")
        emb = (self.text_encoder.encode(captions).pooled.float().cpu().numpy() if S
               else np.zeros((0, self.text_encoder.dim), np.float32))
        return PseudoLabels(segments=segments, embeddings=emb, captions=captions,
                            provenance={"teacher": self.name, "settings": self.settings()})
