"""SAM automatic mask generation on top of a transformers ``SamModel`` (paper Sec 3.4).

The procedure follows SAM's "segment everything" mode: prompt the mask decoder with a regular
grid of points (3 candidate masks each), keep candidates whose predicted IoU and stability
score are high, suppress duplicates with NMS, remove small islands and holes, and paint the
survivors into one frame-local segment map (large masks first so small parts stay visible).
Pre-processing (resize the longest side to the model's input size, normalise, pad) is done
here in torch so that no torchvision / image-processor backend is needed; the mean/std come
from the checkpoint's ``preprocessor_config.json`` when it has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liftgs.config import to_dict
from liftgs.teachers.base import compact_segments, masks_to_segments

__all__ = ["AutoMaskConfig", "SamAutoMaskGenerator", "box_nms", "box_nms_reference", "mask_nms",
           "boxes_from_masks", "box_iou_2d", "stability_score", "remove_small_regions"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AutoMaskConfig:
    """Automatic-mask-generation settings (defaults = SAM's published ones, one crop layer)."""

    points_per_side: int = 32  # grid of points_per_side^2 single-point prompts
    points_per_batch: int = 64  # prompts decoded at once (memory: batch x 3 x H x W floats)
    pred_iou_thresh: float = 0.88  # keep masks whose predicted IoU is at least this
    stability_thresh: float = 0.95  # IoU between the mask at logit +offset and at -offset
    stability_offset: float = 1.0
    mask_threshold: float = 0.0  # logit threshold of a mask
    nms: str = "box"  # "box" (SAM's choice) or "mask"
    nms_thresh: float = 0.7
    min_region_area: int = 100  # islands / holes smaller than this (px) are removed; 0 = keep

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1")
        if self.nms not in ("box", "mask"):
            raise ValueError(f"AutoMaskConfig.nms must be 'box' or 'mask', got {self.nms!r}")
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"AutoMaskConfig.nms_thresh must be in (0, 1], got {self.nms_thresh}")
        if self.stability_offset <= 0:
            raise ValueError(f"AutoMaskConfig.stability_offset must be > 0, got {self.stability_offset}")
        if self.min_region_area < 0:
            raise ValueError(f"AutoMaskConfig.min_region_area must be >= 0, got {self.min_region_area}")


def boxes_from_masks(masks: Tensor) -> Tensor:  # [K, H, W] bool -> [K, 4] xyxy, x2/y2 exclusive
    K, H, W = masks.shape
    if K == 0:
        return torch.zeros(0, 4, device=masks.device)
    rows, cols = masks.any(2), masks.any(1)  # [K, H], [K, W]
    ar_h = torch.arange(H, device=masks.device).expand(K, H)
    ar_w = torch.arange(W, device=masks.device).expand(K, W)
    y0 = torch.where(rows, ar_h, H).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, W).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    empty = ~rows.any(1)
    box = torch.stack([x0, y0, x1, y1], 1).float()
    box[empty] = 0.0
    return box


def box_iou_2d(a: Tensor, b: Tensor) -> Tensor:  # [N, 4], [M, 4] xyxy -> [N, M]
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def _greedy_nms(iou: Tensor, thresh: float) -> Tensor:
    """Greedy suppression on a score-sorted IoU matrix; returns kept positions (sorted order)."""
    N = iou.shape[0]
    keep = torch.ones(N, dtype=torch.bool, device=iou.device)
    for i in range(N):
        if keep[i]:
            keep[i + 1:] &= iou[i, i + 1:] <= thresh
    return keep.nonzero(as_tuple=True)[0]


def box_nms(boxes: Tensor, scores: Tensor, iou_thresh: float) -> Tensor:
    """Indices of kept boxes, by decreasing score (torchvision.ops.nms semantics)."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[_greedy_nms(box_iou_2d(boxes[order], boxes[order]), iou_thresh)]


def box_nms_reference(boxes: Tensor, scores: Tensor, iou_thresh: float) -> Tensor:
    """Slow, obvious NMS (pure Python over box pairs) that tests compare :func:`box_nms` to."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        bi = boxes[i].tolist()
        ok = True
        for j in kept:
            bj = boxes[j].tolist()
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
            if union > 0 and inter / union > iou_thresh:
                ok = False
                break
        if ok:
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def mask_nms(masks: Tensor, scores: Tensor, iou_thresh: float) -> Tensor:
    """NMS with mask IoU instead of box IoU (slower, better for thin / nested objects)."""
    order = torch.argsort(scores, descending=True, stable=True)
    flat = masks[order].flatten(1).float()  # [K, HW]
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))
    return order[_greedy_nms(iou, iou_thresh)]


def stability_score(logits: Tensor, threshold: float, offset: float) -> Tensor:  # [K, H, W] -> [K]
    """IoU of the mask thresholded at ``threshold + offset`` and ``threshold - offset`` (SAM)."""
    inter = (logits > threshold + offset).flatten(1).sum(1)
    union = (logits > threshold - offset).flatten(1).sum(1)
    return torch.where(union > 0, inter.float() / union.clamp_min(1).float(), torch.zeros_like(inter, dtype=torch.float))


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop islands smaller than ``min_area`` px and fill holes smaller than it (SAM post-processing)."""
    from scipy import ndimage

    if min_area <= 0:
        return mask
    out = mask.copy()
    for target in (False, True):  # holes first (background components), then islands
        comps, n = ndimage.label(out == target)
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        small = np.nonzero(sizes < min_area)[0]
        small = small[small > 0]
        if small.size:
            out[np.isin(comps, small)] = not target
    return out


def _read_norm(path: Path, default_mean, default_std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = path / "preprocessor_config.json"
    if not cfg.is_file():
        return default_mean, default_std
    try:
        doc = json.loads(cfg.read_text())
    except ValueError as err:
        raise ValueError(f"{cfg}: not valid JSON ({err})") from err
    return tuple(doc.get("image_mean", default_mean)), tuple(doc.get("image_std", default_std))


class SamAutoMaskGenerator:
    """``generator(rgb [H, W, 3] uint8) -> segments [H, W] int32`` with a ``SamModel``."""

    def __init__(self, model, config: AutoMaskConfig | None = None, name: str = "sam",
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.model = model.eval().requires_grad_(False)
        self.config = config if config is not None else AutoMaskConfig()
        self.name = name
        self.mean, self.std = mean, std
        self.input_size = int(model.config.vision_config.image_size)

    @classmethod
    def from_dir(cls, path: str | Path, config: AutoMaskConfig | None = None, device: str | torch.device = "cpu",
                 name: str | None = None) -> "SamAutoMaskGenerator":
        from transformers import SamModel

        from liftgs.text.hf import load_local

        path = Path(path)
        model = load_local([SamModel], path, "a SamModel")[0].to(device)
        mean, std = _read_norm(path, IMAGENET_MEAN, IMAGENET_STD)
        return cls(model, config, name=name or str(path), mean=mean, std=std)

    def settings(self) -> dict[str, Any]:
        return {"model": self.name, **to_dict(self.config)}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _preprocess(self, rgb: np.ndarray) -> tuple[Tensor, float, tuple[int, int]]:
        H, W, _ = rgb.shape
        S = self.input_size
        scale = S / max(H, W)
        h, w = int(H * scale + 0.5), int(W * scale + 0.5)
        img = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0  # [1, 3, H, W]
        img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        img = F.pad((img - mean) / std, (0, S - w, 0, S - h))
        return img, scale, (h, w)

    def _upscale(self, low: Tensor, resized: tuple[int, int], out: tuple[int, int]) -> Tensor:
        """Low-res mask logits [K, h', w'] -> logits at the original image size [K, H, W]."""
        S = self.input_size
        x = F.interpolate(low[:, None], size=(S, S), mode="bilinear", align_corners=False)
        x = x[..., : resized[0], : resized[1]]
        return F.interpolate(x, size=out, mode="bilinear", align_corners=False)[:, 0]

    @torch.no_grad()
    def propose(self, rgb: np.ndarray) -> tuple[Tensor, Tensor]:
        """Candidate masks [K, H, W] bool and scores [K] after IoU/stability filtering and NMS."""
        cfg = self.config
        H, W, _ = rgb.shape
        pixels, scale, resized = self._preprocess(rgb)
        emb = self.model.get_image_embeddings(pixels)
        n = cfg.points_per_side
        g = (torch.arange(n, device=self.device, dtype=torch.float32) + 0.5) / n
        gy, gx = torch.meshgrid(g * H, g * W, indexing="ij")
        points = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1) * scale  # [n*n, 2] (x, y), resized px
        masks, scores = [], []
        for i in range(0, points.shape[0], cfg.points_per_batch):
            pts = points[i:i + cfg.points_per_batch]
            out = self.model(image_embeddings=emb, input_points=pts[None, :, None, :],
                             input_labels=torch.ones(1, pts.shape[0], 1, dtype=torch.long, device=self.device),
                             multimask_output=True)
            low = out.pred_masks[0].flatten(0, 1)  # [B*3, h', w']
            iou = out.iou_scores[0].flatten()  # [B*3]
            logits = self._upscale(low, resized, (H, W))
            stab = stability_score(logits, cfg.mask_threshold, cfg.stability_offset)
            ok = (iou >= cfg.pred_iou_thresh) & (stab >= cfg.stability_thresh)
            binary = logits[ok] > cfg.mask_threshold
            nonempty = binary.flatten(1).any(1)
            masks.append(binary[nonempty])
            scores.append(iou[ok][nonempty])
        masks_t, scores_t = torch.cat(masks), torch.cat(scores)
        if masks_t.shape[0] == 0:
            return masks_t, scores_t
        if cfg.nms == "box":
            keep = box_nms(boxes_from_masks(masks_t), scores_t, cfg.nms_thresh)
        else:
            keep = mask_nms(masks_t, scores_t, cfg.nms_thresh)
        return masks_t[keep], scores_t[keep]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        masks, _ = self.propose(rgb)
        H, W, _ = rgb.shape
        cleaned = [remove_small_regions(m, self.config.min_region_area) for m in masks.cpu().numpy()]
        cleaned = [m for m in cleaned if m.any()]
        if not cleaned:
            return np.full((H, W), -1, dtype=np.int32)
        stack = np.stack(cleaned)
        order = np.argsort(-stack.reshape(len(stack), -1).sum(1), kind="stable")  # large first
        seg, _ = compact_segments(masks_to_segments(stack, order))
        if self.config.min_region_area > 0:  # parts hidden under smaller masks may be tiny now
            area = np.bincount(seg[seg >= 0], minlength=int(seg.max(initial=-1)) + 1)
            seg = np.where((seg >= 0) & (area[np.maximum(seg, 0)] < self.config.min_region_area), -1, seg)
            seg, _ = compact_segments(seg)
        return seg.astype(np.int32)
