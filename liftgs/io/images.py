"""Image files of the data layer: colour (PNG/JPEG), 16-bit depth and instance PNGs (PIL).

Depth is stored as uint16 **millimetres** (0 = invalid), the convention of ScanNet, TUM and
7-Scenes exports; instance maps as uint16 ``id + 1`` (0 = none). Every reader raises a
:class:`~liftgs.io.errors.DataError` naming the file on a missing, truncated or ill-typed image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from liftgs.io.errors import DataError, data_error

__all__ = [
    "read_rgb",
    "write_rgb",
    "read_uint16_png",
    "read_depth",
    "write_depth_mm",
    "depth_to_mm",
    "read_instance_png",
    "write_instance_png",
    "resize_rgb",
]

MAX_DEPTH_MM = 65535


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError("image file is missing", path)
    try:
        img = Image.open(path)
        img.load()  # decode now: truncated files fail here, not later
    except Exception as exc:  # PIL raises OSError / SyntaxError / ValueError variants
        raise data_error(path, "cannot decode image (truncated or not an image?)", exc) from exc
    return img


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Colour image as uint8 [H, W, 3]; ``size`` = (width, height) resizes it (bilinear)."""
    path = Path(path)
    img = _open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of uint8 [H, W, 3] to [height, width, 3]."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR), dtype=np.uint8)


def write_rgb(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write uint8 [H, W, 3]; the suffix (.png lossless / .jpg) picks the format."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"colour must be uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}", path)
    img = Image.fromarray(np.ascontiguousarray(rgb))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=jpeg_quality)
    else:
        img.save(path)


def read_uint16_png(path: str | Path, require_16bit: bool = False) -> np.ndarray:
    """A single-channel 16-bit PNG as uint16 [H, W]. 8-bit single-channel is accepted too,
    unless ``require_16bit`` (depth: an 8-bit depth map has lost its units, so it is refused)."""
    path = Path(path)
    img = _open(path)
    if require_16bit and img.mode in ("L", "P", "1", "LA", "RGB", "RGBA"):
        raise DataError(f"depth: expected a 16-bit single-channel PNG, got an 8-bit image (PIL mode "
                        f"{img.mode!r}); depth must keep its raw 16-bit values", path)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
        raise DataError(f"expected a single-channel 16-bit image, got PIL mode {img.mode!r}", path)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"expected a single-channel image, got shape {list(arr.shape)}", path)
    if arr.dtype != np.uint16:
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise DataError("values outside the uint16 range", path)
        arr = arr.astype(np.uint16)
    return arr.copy()


def read_depth(path: str | Path, scale: float = 1000.0, invalid_value: int | None = None) -> np.ndarray:
    """16-bit depth PNG as float32 metres [H, W]: ``raw / scale``; 0 and ``invalid_value``
    become 0. An 8-bit image is refused (:func:`read_uint16_png`)."""
    raw = read_uint16_png(path, require_16bit=True)
    depth = raw.astype(np.float32) / np.float32(scale)
    if invalid_value is not None:
        depth[raw == invalid_value] = 0.0
    return depth


def depth_to_mm(depth: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Metres -> uint16 millimetres (rounded). NaN, inf, <= 0 and > 65.535 m become 0 (invalid)."""
    d = np.asarray(depth, dtype=np.float64)
    mm = np.round(d * 1000.0)
    bad = ~np.isfinite(mm) | (mm <= 0)
    too_far = np.isfinite(mm) & (mm > MAX_DEPTH_MM)
    if too_far.any():
        warnings.warn(f"{path or 'depth'}: {int(too_far.sum())} pixels beyond 65.535 m stored as invalid (0)",
                      stacklevel=3)
    mm[bad | too_far] = 0
    return mm.astype(np.uint16)


def write_depth_mm(path: str | Path, depth: np.ndarray) -> None:
    """Write float metres as a uint16 millimetre PNG (see :func:`depth_to_mm`)."""
    Image.fromarray(depth_to_mm(depth, path)).save(Path(path))


def write_instance_png(path: str | Path, instance_ids: np.ndarray) -> None:
    """Write int instance ids [H, W] (-1 = none) as uint16 ``id + 1``."""
    ids = np.asarray(instance_ids, dtype=np.int64)
    if ids.size and (ids.min() < -1 or ids.max() > 65534):
        raise DataError(f"instance ids must lie in [-1, 65534] to fit a uint16 PNG, got "
                        f"[{ids.min()}, {ids.max()}]", path)
    Image.fromarray((ids + 1).astype(np.uint16)).save(Path(path))


def read_instance_png(path: str | Path) -> np.ndarray:
    """Inverse of :func:`write_instance_png`: int32 [H, W], -1 = none."""
    return read_uint16_png(path).astype(np.int32) - 1
