"""SAM + CLIP pseudo-labels (paper Sec 3.4, Fig. 4): segments from SAM, one CLIP image
embedding per segment, used during pre-training as *pseudo language queries* because CLIP
image and text embeddings share one space (query with CLIP text at test time).

Each region is embedded from a crop of its bounding box in which pixels outside the mask are
set to the CLIP mean colour (so they normalise to zero), padded to a square with the same
colour and resized to the CLIP input size. Pre-processing is done in torch (no torchvision);
mean/std come from the checkpoint's ``preprocessor_config.json`` when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liftgs.teachers.base import Segmenter
from liftgs.teachers.sam import AutoMaskConfig, SamAutoMaskGenerator, _read_norm
from liftgs.types import Frame, PseudoLabels, Scene

__all__ = ["ClipImageEncoder", "SamClipTeacher", "region_crops", "build_samclip_teacher"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def region_crops(rgb: np.ndarray, segments: np.ndarray, fill: tuple[float, ...], size: int) -> Tensor:
    """One square crop per segment: [S, 3, size, size] float in [0, 1].

    crop the segment's box -> pixels outside the mask = ``fill`` -> pad to a square (centred)
    with ``fill`` -> bicubic resize to ``size``.
    """
    S = int(segments.max(initial=-1)) + 1
    img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0  # [3, H, W]
    fill_t = torch.tensor(fill, dtype=torch.float32).view(3, 1, 1)
    out = torch.empty(S, 3, size, size)
    for k in range(S):
        ys, xs = np.nonzero(segments == k)
        if ys.size == 0:
            out[k] = fill_t.expand(3, size, size)
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        mask = torch.from_numpy(segments[y0:y1, x0:x1] == k)
        crop = torch.where(mask, img[:, y0:y1, x0:x1], fill_t)
        h, w = crop.shape[1:]
        side = max(h, w)
        square = fill_t.expand(3, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        square[:, top:top + h, left:left + w] = crop
        out[k] = F.interpolate(square[None], size=(size, size), mode="bicubic", align_corners=False,
                               antialias=True)[0].clamp(0.0, 1.0)
    return out


class ClipImageEncoder:
    """Projected, L2-normalised CLIP image embeddings of masked regions (frozen)."""

    def __init__(self, model, name: str, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD,
                 batch_size: int = 32) -> None:
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.mean, self.std = mean, std
        self.size = int(model.config.vision_config.image_size)
        self.dim = int(model.config.projection_dim)
        self.batch_size = batch_size

    @classmethod
    def from_dir(cls, path: str | Path, device: str | torch.device = "cpu", name: str | None = None,
                 batch_size: int = 32) -> "ClipImageEncoder":
        from transformers import CLIPModel

        from liftgs.text.hf import load_local

        path = Path(path)
        model = load_local([CLIPModel], path, "a CLIPModel")[0].to(device)
        mean, std = _read_norm(path, CLIP_MEAN, CLIP_STD)
        return cls(model, name=name or str(path), mean=mean, std=std, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: Tensor) -> Tensor:  # [N, 3, s, s] in [0, 1] -> [N, D]
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        outs = []
        for i in range(0, images.shape[0], self.batch_size):
            x = (images[i:i + self.batch_size].to(self.device) - mean) / std
            pooled = self.model.vision_model(pixel_values=x).pooler_output
            outs.append(F.normalize(self.model.visual_projection(pooled), dim=-1))
        return torch.cat(outs) if outs else torch.zeros(0, self.dim, device=self.device)

    def embed_regions(self, rgb: np.ndarray, segments: np.ndarray) -> np.ndarray:  # -> [S, D] float32
        crops = region_crops(rgb, segments, self.mean, self.size)
        return self.embed_images(crops).float().cpu().numpy()


class SamClipTeacher:
    """``teacher(frame) -> PseudoLabels``: any segmenter (SAM by default) + CLIP region embeddings."""

    name = "samclip"

    def __init__(self, segmenter: Segmenter, clip: ClipImageEncoder) -> None:
        self.segmenter = segmenter
        self.clip = clip

    def settings(self) -> dict[str, Any]:
        seg_settings = self.segmenter.settings() if hasattr(self.segmenter, "settings") else type(self.segmenter).__name__
        return {"segmenter": seg_settings, "clip": self.clip.name}

    def __call__(self, frame: Frame, scene: Scene | None = None) -> PseudoLabels:
        segments = np.asarray(self.segmenter(frame.rgb), dtype=np.int32)
        if segments.shape != frame.rgb.shape[:2]:
            raise ValueError(f"segmenter returned {list(segments.shape)} for a {list(frame.rgb.shape[:2])} image")
        embeddings = self.clip.embed_regions(frame.rgb, segments)
        return PseudoLabels(segments=segments, embeddings=embeddings, captions=None,
                            provenance={"teacher": self.name, "settings": self.settings()})


def build_samclip_teacher(sam: str | Path, clip: str | Path, config: AutoMaskConfig | None = None,
                          device: str | torch.device = "cpu") -> SamClipTeacher:
    """SAM + CLIP from local folders (or repos in the HF cache); nothing is downloaded."""
    from liftgs.text import resolve_model

    sam_dir, sam_name = resolve_model(sam, "SAM model")
    clip_dir, clip_name = resolve_model(clip, "CLIP model")
    return SamClipTeacher(SamAutoMaskGenerator.from_dir(sam_dir, config, device=device, name=sam_name),
                          ClipImageEncoder.from_dir(clip_dir, device=device, name=clip_name))
