"""The one explicit process-wide runtime set-up: thread counts and the BLAS/numba layers.

Nothing in ``liftgs`` changes process-wide state as a side effect: importing the package or
calling a library function sets no environment variable, reseeds no global RNG and changes no
thread count. Settings that the whole process shares are made here, once, by whoever owns the
process:

* Python users call ``liftgs.configure_runtime(threads=1)`` once before heavy work
  (rendering with the numba backend, training, pseudo-labelling).
* The ``liftgs`` command (``liftgs.cli.main``, also what ``torchrun -m liftgs.cli`` runs) calls
  it before dispatching a subcommand; ``demo`` and ``pseudolabel`` call it with their own
  ``--threads``.

The training recipes seed and then draw from the global RNGs (initial weights, dropout) inside
:func:`fork_rng`, which gives the caller its python / numpy / torch RNG states back on exit.
Building a model on its own draws from torch's global RNG, as every ``nn.Module`` does.

Without ``configure_runtime`` the library still runs; only the numba backend can be much slower.
"""

from __future__ import annotations

import ctypes
import glob
import os
import random
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

WORKQUEUE = "workqueue"
_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                     "openblas_set_num_threads")


@dataclass(frozen=True)
class RuntimeSettings:
    """What :func:`configure_runtime` left in place."""

    torch_threads: int
    """torch intra-op threads (``torch.get_num_threads()``)"""
    numba_threads: int | None
    """threads of numba's parallel kernels in the calling thread; None without numba"""
    numba_threading_layer: str | None
    """numba's active threading layer; None without numba"""
    scipy_blas_libraries: int
    """scipy-bundled OpenBLAS libraries capped at one thread (0 without scipy's wheel build)"""


def configure_runtime(threads: int | None = None) -> RuntimeSettings:
    """Set torch's and numba's thread counts, numba's threading layer and scipy's BLAS threads.

    ``threads``: torch intra-op threads, and numba's (capped at ``NUMBA_NUM_THREADS``, the size
    of numba's pool); None keeps torch's current count and gives numba the same.

    * numba's threading layer is ``"workqueue"`` unless the ``NUMBA_THREADING_LAYER`` environment
      variable chooses one. numba's default OpenMP layer brings a second OpenMP pool next to
      torch's, and its spinning idle workers slowed torch's own ops many times over (starting
      it also resets OpenMP's thread count, which torch shares); workqueue workers sleep. The layer is fixed by numba's first parallel
      launch, so call this before rendering with the numba backend (a warning says when it is
      too late). Workqueue does not allow concurrent launches: the numba backend serialises them.
    * scipy's bundled OpenBLAS (the BLAS behind ``np.dot`` inside numba kernels) runs one
      thread. The numba renderer composites with one small GEMM per screen tile, each already on
      its own numba thread; OpenBLAS's threads on top made those calls many times slower.
      torch's and numpy's BLAS are left alone.
    * numba's thread count is per calling thread (numba's rule): other Python threads that
      launch numba kernels use all ``NUMBA_NUM_THREADS`` unless they call
      ``numba.set_num_threads`` themselves.
    """
    import torch  # noqa: PLC0415

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"configure_runtime: threads must be an int >= 1 or None, got {threads!r}")
        torch.set_num_threads(threads)
    torch_threads = torch.get_num_threads()
    numba_threads, layer = _configure_numba(torch_threads)
    if torch.get_num_threads() != torch_threads:  # an OpenMP layer's start reset it
        torch.set_num_threads(torch_threads)
    return RuntimeSettings(torch_threads=torch_threads, numba_threads=numba_threads,
                           numba_threading_layer=layer, scipy_blas_libraries=cap_scipy_blas(1))


def _configure_numba(threads: int) -> tuple[int | None, str | None]:
    """Choose the threading layer (before numba launches its pool), then the thread count."""
    try:
        import numba  # noqa: PLC0415
        from numba.np.ufunc import parallel  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - any import failure means "no numba backend"
        return None, None
    wanted = os.environ.get("NUMBA_THREADING_LAYER") or WORKQUEUE
    if not parallel._is_initialized:
        numba.config.THREADING_LAYER = wanted
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # launches the pool
    layer = numba.threading_layer()
    if wanted in ("workqueue", "omp", "tbb") and layer != wanted:
        warnings.warn(f"configure_runtime: numba already runs the {layer!r} threading layer (its pool "
                      f"started before this call), not {wanted!r}; call configure_runtime before "
                      "the first numba render", RuntimeWarning, stacklevel=3)
    return numba.get_num_threads(), layer


def scipy_openblas_paths() -> list[str]:
    """Files of the OpenBLAS bundled with scipy's wheels (``scipy.libs/*openblas*``)."""
    try:
        import scipy  # noqa: PLC0415
    except ImportError:
        return []
    return sorted(glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs",
                                         "*openblas*")))


def cap_scipy_blas(threads: int) -> int:
    """Set scipy's bundled OpenBLAS to ``threads`` threads; returns how many libraries were set.

    Loading the library here is the same mapping ``scipy.linalg`` (and numba's ``np.dot``) use,
    so the setting reaches them.
    """
    count = 0
    for path in scipy_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _OPENBLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(int(threads))
                count += 1
                break
    return count


@contextmanager
def fork_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block on the global python / numpy / torch (CPU and CUDA) RNGs, then give the
    caller back the states it had.

    ``seed`` seeds all three on entry (``torch.manual_seed`` semantics; numpy gets it mod
    2**32); None leaves them as they are. Code inside draws exactly what it would draw without
    the fork, so results are unchanged; only what the caller sees afterwards differs. Also a
    decorator: ``@fork_rng()``. Where CUDA is available its generators are saved too, which
    initialises CUDA (as ``torch.random.fork_rng`` does).
    """
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []  # inits CUDA
    try:
        with torch.random.fork_rng(devices=cuda):
            if seed is not None:
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def check_device(device: str, allow_auto: bool = True) -> str:
    """``device`` checked against this machine before any work: "cpu", "cuda", "cuda:N" (and
    "auto" where ``allow_auto``: CUDA when there is one, else the CPU). A device this machine
    does not have is a one-line ``ValueError`` saying so."""
    import torch  # noqa: PLC0415

    name = str(device)
    if name == "cpu" or (allow_auto and name == "auto"):
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: this machine has no usable CUDA device (torch "
                             f"{torch.__version__}); use --device cpu")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return name
    choices = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    raise ValueError(f"--device must be {choices}, got {name!r}")
