"""The pseudo-label cache: one safetensors file per frame (paper appendix A.1).

Layout::

    <root>/<scene_id>/<frame_key>.safetensors
        tensors   "semantics"        [H, W] int32   frame-local segment index, -1 = none
                  "index2semantics"  [S, F] float16 one embedding per segment
        metadata  "format"      "liftgs-pseudolabels"
                  "version"     "1"
                  "captions"    JSON list of S strings, or JSON null
                  "provenance"  JSON object (teacher name + settings, text encoder, area filter)
                  "checksum"    sha256 over tensors + captions + provenance

The Semantics / Index2Semantics split keeps a frame small (an int map plus S x F halves instead
of an H x W x F feature map). Files are written to a temporary name in the same folder and
renamed, so a crash never leaves a half-written file under the final name; the checksum catches
files damaged afterwards, and every read verifies it, so a corrupt file is never used silently.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.files import atomic_write
from liftgs.io.errors import DataError
from liftgs.types import Frame, PseudoLabels

__all__ = ["PseudoLabelStore", "write_labels", "read_labels", "frame_key", "FORMAT_NAME", "FORMAT_VERSION",
           "SUFFIX", "text_encoder_of"]

FORMAT_NAME = "liftgs-pseudolabels"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


def frame_key(frame: Frame, index: int) -> str:
    """The cache key of a frame: its name, or its zero-padded index when it has none."""
    return frame.name if frame.name else f"{index:06d}"


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{kind} {name!r} cannot be a cache file name (non-empty, no '/', not starting with '.')")


def _checksum(semantics: np.ndarray, index2semantics: np.ndarray, captions: str, provenance: str) -> str:
    h = hashlib.sha256()
    for arr in (semantics, index2semantics):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(captions.encode())
    h.update(provenance.encode())
    return h.hexdigest()


def encode_labels(labels: PseudoLabels) -> bytes:
    """The bytes of one cache file (embeddings rounded to float16, as the paper stores them)."""
    import safetensors.numpy

    semantics = np.ascontiguousarray(labels.segments, dtype=np.int32)
    emb = np.asarray(labels.embeddings, dtype=np.float32)
    if not np.isfinite(emb).all() or (emb.size and np.abs(emb).max() > np.finfo(np.float16).max):
        raise ValueError("embeddings contain NaN/inf or values outside the float16 range (|x| <= 65504)")
    index2semantics = np.ascontiguousarray(emb, dtype=np.float16)
    captions = json.dumps(labels.captions)
    provenance = json.dumps(labels.provenance, sort_keys=True)
    metadata = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "captions": captions,
                "provenance": provenance,
                "checksum": _checksum(semantics, index2semantics, captions, provenance)}
    return safetensors.numpy.save({"semantics": semantics, "index2semantics": index2semantics}, metadata=metadata)


def _header_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError(f"file is {len(data)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("truncated safetensors header")
    header = json.loads(data[8:8 + n])
    return dict(header.get("__metadata__") or {})


def decode_labels(data: bytes, where: str | Path = "<bytes>") -> PseudoLabels:
    """Parse and verify one cache file; any damage raises :class:`DataError` naming ``where``."""
    import safetensors.numpy

    try:
        meta = _header_metadata(data)
        tensors = safetensors.numpy.load(data)
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise DataError(f"not a readable safetensors file ({type(err).__name__}: {err})", where) from err
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"not a liftgs pseudo-label file (format {meta.get('format')!r})", where)
    if meta.get("version") != str(FORMAT_VERSION):
        raise DataError(f"pseudo-label format version {meta.get('version')} unsupported (this liftgs reads "
                        f"{FORMAT_VERSION}); re-run `liftgs pseudolabel`", where)
    try:
        semantics, index2semantics = tensors["semantics"], tensors["index2semantics"]
        captions_json, provenance_json = meta["captions"], meta["provenance"]
    except KeyError as err:
        raise DataError(f"missing entry {err} in pseudo-label file", where) from err
    if meta.get("checksum") != _checksum(semantics, index2semantics, captions_json, provenance_json):
        raise DataError("checksum mismatch: the file is corrupt; delete it or re-run `liftgs pseudolabel`", where)
    try:
        return PseudoLabels(segments=semantics.astype(np.int32, copy=False),
                            embeddings=index2semantics.astype(np.float32),
                            captions=json.loads(captions_json), provenance=json.loads(provenance_json))
    except ValueError as err:
        raise DataError(f"inconsistent pseudo-labels ({err})", where) from err


def write_labels(path: str | Path, labels: PseudoLabels) -> Path:
    """Write one cache file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    data = encode_labels(labels)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path


def read_labels(path: str | Path) -> PseudoLabels:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError("pseudo-label file not found (run `liftgs pseudolabel` first)", path) from err
    return decode_labels(data, path)


class PseudoLabelStore:
    """Random access to cached pseudo-labels by (scene id, frame key)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, scene_id: str, frame_name: str) -> Path:
        _check_name("scene id", scene_id)
        _check_name("frame name", frame_name)
        return self.root / scene_id / f"{frame_name}{SUFFIX}"

    def get(self, scene_id: str, frame_name: str) -> PseudoLabels:
        """The verified labels of one frame (``DataError`` if missing or corrupt)."""
        return read_labels(self.path(scene_id, frame_name))

    def put(self, scene_id: str, frame_name: str, labels: PseudoLabels) -> Path:
        return write_labels(self.path(scene_id, frame_name), labels)

    def has(self, scene_id: str, frame_name: str) -> bool:
        return self.path(scene_id, frame_name).is_file()

    def scenes(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def frames(self, scene_id: str) -> list[str]:
        """Sorted frame keys cached for ``scene_id`` (empty if none)."""
        _check_name("scene id", scene_id)
        folder = self.root / scene_id
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir()
                      if p.name.endswith(SUFFIX) and not p.name.startswith("."))

    def check(self, scene_id: str, frame_name: str, provenance: dict[str, Any] | None = None) -> str:
        """"missing", "corrupt", "mismatch" (provenance differs from ``provenance``) or "ok"."""
        path = self.path(scene_id, frame_name)
        if not path.is_file():
            return "missing"
        try:
            labels = read_labels(path)
        except DataError:
            return "corrupt"
        if provenance is not None and _canonical(labels.provenance) != _canonical(provenance):
            return "mismatch"
        return "ok"


def text_encoder_of(provenance: dict[str, Any]) -> str | None:
    """The text encoder whose space a pseudo-label's embeddings live in, from its provenance:
    the encoder that embedded the captions (synthetic and caption teachers), or the CLIP
    model whose image tower embedded the segments (SAM + CLIP; its text tower shares the
    space). None when the provenance does not say."""
    settings = provenance.get("settings") if isinstance(provenance, dict) else None
    if not isinstance(settings, dict):
        return None
    for key in ("text_encoder", "clip"):
        if isinstance(settings.get(key), str) and settings[key]:
            return settings[key]
    return None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
