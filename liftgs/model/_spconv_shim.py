"""Make spconv's CPU wheel usable for training (imported once by :mod:`liftgs.model.encoder`).

spconv 2.3.x asks for ``torch.cuda.current_stream()`` inside its backward kernels even when
every tensor lives on the CPU, which raises "Torch not compiled with CUDA enabled" on CPU-only
torch builds. The stream handle is only passed through to CUDA kernels, so on a machine
without CUDA we hand spconv the null stream (0) instead. Nothing changes when CUDA exists.
"""

from __future__ import annotations

import torch

_PATCHED = False


def _null_stream() -> int:
    return 0


def apply_spconv_cpu_shim() -> bool:
    """Patch spconv's ``get_current_stream`` when CUDA is unavailable; returns True if patched."""
    global _PATCHED
    if _PATCHED or torch.cuda.is_available():
        return _PATCHED
    import spconv.pytorch.cppcore as cppcore
    import spconv.pytorch.ops as ops

    # ops and hash imported the function by name, so every module-level alias is replaced.
    for module in (cppcore, ops):
        module.get_current_stream = _null_stream
    try:
        import spconv.pytorch.hash as hash_mod

        hash_mod.get_current_stream = _null_stream
    except ImportError:  # older spconv without the hash table module
        pass
    _PATCHED = True
    return True
