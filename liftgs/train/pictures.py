"""Picture panels for training logs: masks as colours, images side by side (uint8 HxWx3).

Pre-training writes, every ``--image-every`` steps, its probe view's pseudo-label segments next
to the masks the model renders for the same pseudo-queries, and the frame next to the rendered
colours (TensorBoard "images" tab; Weights & Biases when enabled).
"""

from __future__ import annotations

import numpy as np

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
                   dtype=np.uint8)  # distinct colours, one per query (cycled)
SEPARATOR = 4  # px of white between panels


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] floats in [0, 1] (clipped) or uint8 -> uint8."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mask_panel(masks: np.ndarray, background: np.ndarray | None = None, threshold: float = 0.5) -> np.ndarray:
    """Masks [K, H, W] (bool or probabilities) as one colour image: each pixel takes the colour
    of its most probable mask where that reaches ``threshold``, else the background (a dimmed
    grey copy of ``background`` [H, W, 3], or black)."""
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 3:
        raise ValueError(f"mask_panel: masks must be [K, H, W], got {list(masks.shape)}")
    K, H, W = masks.shape
    if background is None:
        out = np.zeros((H, W, 3), np.uint8)
    else:
        grey = to_uint8(background).astype(np.float32).mean(-1, keepdims=True)
        out = np.repeat(0.4 * grey, 3, axis=-1).astype(np.uint8)
    if K:
        best = masks.argmax(0)
        hit = masks.max(0) >= threshold
        out[hit] = PALETTE[best[hit] % len(PALETTE)]
    return out


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images [H, W_i, 3] of one height, left to right with white separators."""
    images = [to_uint8(im) for im in images]
    heights = {im.shape[0] for im in images}
    if len(heights) != 1:
        raise ValueError(f"side_by_side: images must share their height, got {sorted(heights)}")
    gap = np.full((images[0].shape[0], SEPARATOR, 3), 255, np.uint8)
    parts = []
    for i, im in enumerate(images):
        parts += [gap, im] if i else [im]
    return np.concatenate(parts, axis=1)


__all__ = ["PALETTE", "to_uint8", "mask_panel", "side_by_side"]
