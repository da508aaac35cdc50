"""Compiled CPU backend: the weights as a pixel-major pair list (CSR), numba kernels.

Projection stays in torch (cheap, differentiable); binning reuses ``binning.tile_lists``.
Each rendered pixel then walks its tile's depth-sorted list once to count its blended
Gaussians and once to write them (gsplat's rules, the same operation order as the dense
reference), so ``RenderWeights.values`` is a flat [M] tensor of weights alpha * T with
``CsrLayout`` saying which pixel and Gaussian each belongs to. Compositing is the sparse
product ``W @ attributes`` in one pass over the pairs; its backward and the geometry
backward (the back-to-front recurrence of 3DGS) scatter to Gaussians through a transposed
pair list built once per view, so every sum has a fixed order (bit-reproducible for any
thread count). See docs/renderer.md.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.autograd import Function

from liftgs.render.binning import TILE, tile_lists
from liftgs.render.projection import ALPHA_MAX, ALPHA_MIN, T_MIN, Projection


CAP_MAX = 128  # pairs per pixel kept by the single forward walk; longer rows walk twice
SCRATCH_BYTES = 1 << 28  # budget of that walk's scratch rows


@functools.cache
def numba_available() -> bool:
    """True when numba imports (the kernels compile lazily on first use)."""
    try:
        import numba  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - any import failure means "use the torch path"
        return False
    return True


@functools.cache
def _load():
    """Import numba and the kernels once, choosing numba's threading layer first.

    numba's default OpenMP layer brings a second OpenMP runtime next to torch's; its idle
    workers then slowed torch's own ops ~10x on this 2-core machine. The "workqueue" layer
    sleeps when idle; it does not allow concurrent launches, hence ``LAUNCH_LOCK``.
    """
    import numba  # noqa: PLC0415

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    from liftgs.render import numba_kernels  # noqa: PLC0415

    return numba, numba_kernels


LAUNCH_LOCK = threading.RLock()


def _locked(fn):
    """Serialise kernel launches from concurrent Python threads (workqueue layer)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with LAUNCH_LOCK:
            return fn(*args, **kwargs)

    return run


def _kernels():
    numba, numba_kernels = _load()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return numba_kernels


@dataclass
class CsrLayout:
    """Pairs of one view, row-major: row j (pixel ``order[j]``) owns ``row_ptr[j] : row_ptr[j+1]``.

    Rows follow the pixels sorted by screen tile (``order``), so neighbouring rows read the
    same Gaussians (cache). ``ids`` [M] int32 Gaussian of each pair (front to back within a
    row). The transposed list (pairs grouped by Gaussian, in row order, Gaussians visited by
    first row) is built on first need and kept.
    """

    row_ptr: np.ndarray  # [P + 1] int64
    ids: np.ndarray  # [M] int32
    order: np.ndarray  # [P] int64, pixel (index into the rendered pixels) of each row
    num_gaussians: int
    _transposed: tuple | None = field(default=None, repr=False)

    @property
    def num_pairs(self) -> int:
        return int(self.ids.shape[0])

    def transposed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(t_ptr [N + 1], t_pair [M] pair index, t_pix [M] pixel, g_order [N']), int64.

        ``g_order``: the Gaussians that have pairs, sorted by their first row (stable).
        """
        if self._transposed is None:
            M = self.num_pairs
            t_ptr = np.zeros(self.num_gaussians + 1, np.int64)
            t_pair, t_pix = np.empty(M, np.int64), np.empty(M, np.int64)
            with LAUNCH_LOCK:
                _kernels().transpose_pairs(self.row_ptr, self.ids, self.order,
                                           self.num_gaussians, t_ptr, t_pair, t_pix)
            has = np.flatnonzero(np.diff(t_ptr) > 0)
            first = np.searchsorted(self.row_ptr, t_pair[t_ptr[has]], side="right") - 1
            g_order = has[np.argsort(first, kind="stable")].astype(np.int64)
            self._transposed = (t_ptr, t_pair, t_pix, g_order)
        return self._transposed

    def rows(self) -> Tensor:  # [M] long, the pixel (index into ``pixels``) of every pair
        counts = torch.from_numpy(np.diff(self.row_ptr))
        return torch.from_numpy(self.order)[torch.repeat_interleave(
            torch.arange(counts.numel()), counts)]


def _consts(dtype: torch.dtype) -> np.ndarray:
    return torch.tensor([0.5, ALPHA_MAX, ALPHA_MIN, T_MIN, 1.0, 0.0], dtype=dtype).numpy()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _CsrWeights(Function):
    """(means2d, conics, opacities) -> (w [M], T_final [P]); the layout goes out via holder."""

    @staticmethod
    @_locked
    def forward(ctx, means2d, conics, opacities, xy, tile, list_ptr, list_ids,  # noqa: D102
                holder):
        kern = _kernels()
        dt = means2d.dtype
        xs, ys = _np(xy[:, 0]), _np(xy[:, 1])
        order = _np(torch.sort(tile, stable=True).indices)
        op = opacities.detach().double()
        lim = torch.log(op.clamp_min(1e-30) / ALPHA_MIN)  # sigma beyond: alpha < 1/255
        lim = (lim + 1e-4 * (1.0 + lim.abs())).to(dt)
        args = (order, xs, ys, _np(tile), _np(list_ptr), _np(list_ids), _np(means2d),
                _np(conics), _np(opacities), _np(lim), _consts(dt))
        P = xs.shape[0]
        counts = np.zeros(P, np.int64)
        T = np.empty(P, xs.dtype)
        cap = int(min(CAP_MAX, max(8, SCRATCH_BYTES // max(1, P * (4 + xs.itemsize)))))
        s_ids, s_w = np.empty(P * cap, np.int32), np.empty(P * cap, xs.dtype)
        kern.walk_capped(*args, cap, s_ids, s_w, counts, T)
        row_ptr = np.zeros(P + 1, np.int64)
        np.cumsum(counts, out=row_ptr[1:])
        M = int(row_ptr[-1])
        ids, w = np.empty(M, np.int32), np.empty(M, xs.dtype)
        kern.compact_rows(row_ptr, counts, cap, s_ids, s_w, ids, w)
        del s_ids, s_w
        redo = np.flatnonzero(counts > cap)
        if redo.size:  # rows longer than the scratch: walk them again, writing in place
            kern.write_pairs(order[redo], *args[1:], row_ptr[redo], ids, w)
        layout = CsrLayout(row_ptr, ids, order, int(means2d.shape[0]))
        holder["layout"] = layout
        ctx.layout = layout
        ctx.args = args
        w_t, T_t = torch.from_numpy(w), torch.from_numpy(T)
        ctx.save_for_backward(w_t, T_t)
        return w_t, T_t

    @staticmethod
    @_locked
    def backward(ctx, g_w, g_T):  # noqa: D102
        w, T = ctx.saved_tensors
        lay: CsrLayout = ctx.layout
        order, xs, ys, _, _, _, m, con, op, _, k = ctx.args
        N = lay.num_gaussians
        g_w = torch.zeros_like(w) if g_w is None else g_w.to(w.dtype)
        gT_Tf = torch.zeros_like(T) if g_T is None else g_T.to(T.dtype) * T
        kern = _kernels()
        G = np.empty((lay.num_pairs, 6), xs.dtype)
        kern.weights_bwd_pairs(order, xs, ys, lay.row_ptr, lay.ids, _np(w), m, con, op, k,
                               _np(g_w), _np(gT_Tf), G)
        t_ptr, t_pair, _, g_order = lay.transposed()
        out = np.zeros((N, 6), xs.dtype)
        kern.reduce_pairs(t_ptr, t_pair, g_order, G, out)
        out_t = torch.from_numpy(out)
        return (out_t[:, :2].contiguous(), out_t[:, 2:5].contiguous(), out_t[:, 5].contiguous(),
                None, None, None, None, None)


def csr_weights(
    proj: Projection, opacities: Tensor, pixels: Tensor, width: int, height: int,
    tile_size: int | None = None,
) -> tuple[CsrLayout, Tensor, Tensor]:
    """Differentiable pair-list weights of ``pixels`` [P]: (layout, values [M], T_final [P])."""
    ts = TILE if tile_size is None else int(tile_size)
    tiles_x, tiles_y = (width + ts - 1) // ts, (height + ts - 1) // ts
    with torch.no_grad():
        tile = (pixels // width // ts) * tiles_x + (pixels % width) // ts  # [P]
        occupied = None
        if pixels.numel() < width * height:  # a pixel subset: list only the tiles it touches
            occupied = torch.zeros(tiles_x * tiles_y, dtype=torch.bool)
            occupied[tile] = True
        list_ptr, list_ids = tile_lists(proj, opacities, width, height, ts, occupied)
    dt = proj.means2d.dtype
    xy = torch.stack([(pixels % width).to(dt) + 0.5, (pixels // width).to(dt) + 0.5], -1)
    holder: dict = {}
    values, T = _CsrWeights.apply(proj.means2d, proj.conics, opacities.to(dt), xy, tile,
                                  list_ptr, list_ids, holder)
    return holder["layout"], values, T


class _CsrComposite(Function):
    """(w [M], attributes [N, C]) -> W @ attributes [P, C] for one CsrLayout."""

    @staticmethod
    @_locked
    def forward(ctx, w, attributes, layout):  # noqa: D102
        attr = attributes.detach().contiguous()
        out = np.zeros((layout.row_ptr.shape[0] - 1, attr.shape[1]), attr.numpy().dtype)
        _kernels().composite_fwd(layout.row_ptr, layout.ids, layout.order, _np(w),
                                 attr.numpy(), out)
        ctx.layout = layout
        ctx.save_for_backward(w, attr)
        return torch.from_numpy(out)

    @staticmethod
    @_locked
    def backward(ctx, g_out):  # noqa: D102
        w, attr = ctx.saved_tensors
        lay: CsrLayout = ctx.layout
        kern = _kernels()
        go = _np(g_out.to(attr.dtype))
        g_w = g_attr = None
        if ctx.needs_input_grad[0]:
            gw = np.zeros(lay.num_pairs, go.dtype)
            if go.shape[1]:
                kern.composite_bwd_weights(lay.row_ptr, lay.ids, lay.order, attr.numpy(), go,
                                           gw)
            g_w = torch.from_numpy(gw)
        if ctx.needs_input_grad[1]:
            t_ptr, t_pair, t_pix, g_order = lay.transposed()
            ga = np.zeros(attr.shape, go.dtype)
            kern.composite_bwd_attr(t_ptr, t_pair, t_pix, g_order, _np(w), go, ga)
            g_attr = torch.from_numpy(ga)
        return g_w, g_attr, None


def composite_csr(layout: CsrLayout, values: Tensor, attributes: Tensor) -> Tensor:
    """W @ attributes [P, C] (differentiable in both) for pair-list weights."""
    return _CsrComposite.apply(values.to(attributes.dtype), attributes, layout)
