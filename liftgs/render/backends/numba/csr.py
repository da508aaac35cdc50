"""Compiled CPU backend: the weights as a pixel-major pair list (CSR), numba kernels.

Projection stays in torch (cheap, differentiable); binning is ``binning``'s enumeration
compiled (``tile_lists_numba``). One thread per screen tile walks each of the tile's
rendered pixels down its depth-sorted list (gsplat's rules, the same operation order as the
dense reference), so ``RenderWeights.values`` is a flat [M] tensor of weights alpha * T with
``CsrLayout`` saying which pixel and which tile *column* (a list entry blended at least
once) each belongs to. Compositing is ``W @ attributes`` as per-tile BLAS GEMMs (or one pass
over the pairs when the dense tile blocks would be mostly zeros); gradients per Gaussian are
summed per column inside each tile and then over each Gaussian's columns in tile order, so
every sum has a fixed order (bit-reproducible for any thread count). See docs/renderer.md.

Process-wide settings are the caller's: ``liftgs.configure_runtime`` picks numba's threading
layer and thread count and caps scipy's OpenBLAS (the kernels run correctly without it, only
slower). The one state kept between calls is the forward walk's scratch, at most
``SCRATCH_BYTES``; ``release_scratch()`` frees it.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.autograd import Function

from liftgs.render.binning import TILE, depth_sorted_boxes
from liftgs.render.projection import ALPHA_MAX, ALPHA_MIN, T_MIN, Projection


CAP_MAX = 128  # pairs per pixel kept by the single forward walk; longer rows walk twice
GEMM_MIN_CHANNELS = 1  # composite with per-tile BLAS GEMMs from this many channels on,
GEMM_MIN_DENSITY = 0.2  # when pairs fill at least this share of the dense tile blocks
SPARSE_MIN_CHANNELS = 8  # from this many channels on, composite as torch CSR products instead
SCRATCH_BYTES = 3 << 27  # budget of that walk's scratch rows; at most this much is kept between calls


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
    """Import numba and the kernels once (they compile lazily on first use) and start
    numba's thread pool.

    The threading layer and thread counts are left to ``liftgs.configure_runtime``. Whatever
    the layer, launches are serialised (``LAUNCH_LOCK``): the "workqueue" layer it picks does
    not allow concurrent launches. Starting numba's OpenMP layer (numba's default when
    nothing was configured) resets OpenMP's thread count, which torch shares; the caller's
    torch thread count is put back.
    """
    import numba  # noqa: PLC0415

    from liftgs.render.backends.numba import composite_kernels, kernels  # noqa: PLC0415

    threads = torch.get_num_threads()
    numba.get_num_threads()  # starts the pool (a no-op once started)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return kernels, composite_kernels


LAUNCH_LOCK = threading.RLock()


def _locked(fn):
    """Serialise kernel launches from concurrent Python threads (workqueue layer)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with LAUNCH_LOCK:
            return fn(*args, **kwargs)

    return run


def _kernels():
    return _load()[0]


def _composite_kernels():
    return _load()[1]


@dataclass
class CsrLayout:
    """Pairs of one view, row-major: row r (pixel ``order[r]``) owns ``row_ptr[r] : row_ptr[r+1]``.

    Rows are the rendered pixels sorted by screen tile; tile t owns rows
    ``tile_ptr[t] : tile_ptr[t+1]`` and columns ``col_ptr[t] : col_ptr[t+1]`` (its tile-list
    entries blended at least once, front to back; ``col_gid`` [U] their Gaussians). ``col``
    [M] int32 is the column of each pair (front to back within a row).
    """

    row_ptr: np.ndarray  # [P + 1] int64
    col: np.ndarray  # [M] int32
    order: np.ndarray  # [P] int64, pixel (index into the rendered pixels) of each row
    tile_ptr: np.ndarray  # [num_tiles + 1] int64, rows of each tile
    col_ptr: np.ndarray  # [num_tiles + 1] int64, columns of each tile
    col_gid: np.ndarray  # [U] int32
    num_gaussians: int
    _by_gaussian: tuple | None = field(default=None, repr=False)
    _sparse: tuple | None = field(default=None, repr=False)
    _used: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_pairs(self) -> int:
        return int(self.col.shape[0])

    @property
    def density(self) -> float:
        """Pairs / entries of the dense per-tile blocks [rows_t, columns_t]."""
        dense = int(np.dot(np.diff(self.tile_ptr), np.diff(self.col_ptr)))
        return self.num_pairs / max(1, dense)

    def use_gemm(self, channels: int) -> bool:
        """Composite through per-tile BLAS GEMMs (many channels, dense enough blocks)."""
        return channels >= GEMM_MIN_CHANNELS and self.density >= GEMM_MIN_DENSITY

    def used_gaussians(self) -> np.ndarray:
        """[G] int64 ascending: the Gaussians of this layout's pairs. Cached (the training
        step reads it for the attribute rows and again when ``composite`` checks them)."""
        if self._used is None:
            used = np.zeros(self.num_gaussians, np.bool_)
            used[self.ids] = True
            self._used = np.flatnonzero(used)
        return self._used

    def use_sparse(self, channels: int) -> bool:
        """Composite as torch sparse-CSR products (:meth:`sparse_pattern`): many channels."""
        return channels >= SPARSE_MIN_CHANNELS and self.num_pairs > 0

    def sparse_pattern(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """W and Wᵀ as torch CSR patterns (int32 indices: torch hands those to MKL): (crow
        [R + 1], gaussian [M], pixel of each row [R], row of each pixel [P], and for Wᵀ
        g_ptr [N + 1], row [M], pair [M] grouped by Gaussian in pair order). Cached."""
        if self._sparse is None:
            N, M = self.num_gaussians, self.num_pairs
            g_ptr, g_rows, g_pairs = np.zeros(N + 1, np.int64), np.empty(M, np.int64), np.empty(M, np.int64)
            with LAUNCH_LOCK:
                _kernels().pairs_by_gaussian(self.row_ptr, self.col, self.col_gid, N, g_ptr, g_rows, g_pairs)
            order = torch.from_numpy(self.order)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.shape[0])
            self._sparse = (torch.from_numpy(self.row_ptr.astype(np.int32)), torch.from_numpy(self.ids.astype(np.int32)),
                            order, inverse, torch.from_numpy(g_ptr.astype(np.int32)),
                            torch.from_numpy(g_rows.astype(np.int32)), torch.from_numpy(g_pairs))
        return self._sparse

    def subset_rows(self, positions: np.ndarray) -> tuple["CsrLayout", np.ndarray]:
        """The layout of rendered pixels ``positions`` [Q] (indices into this layout's pixels,
        repeats allowed) and the pair each of its pairs copies ([M'] int64).

        Rows keep their tile order (stable in ``positions``); the tiles keep all their columns,
        so some may be unused by the subset (zero in every product)."""
        tile_of_row = np.repeat(np.arange(self.tile_ptr.shape[0] - 1), np.diff(self.tile_ptr))
        row_of_pixel = np.empty_like(self.order)
        row_of_pixel[self.order] = np.arange(self.order.shape[0])
        rows = row_of_pixel[positions]
        order = np.argsort(tile_of_row[rows], kind="stable")  # subset row -> index into positions
        rows = rows[order]
        lengths = np.diff(self.row_ptr)[rows]
        row_ptr = np.zeros(rows.shape[0] + 1, np.int64)
        np.cumsum(lengths, out=row_ptr[1:])
        pairs = np.repeat(self.row_ptr[rows] - row_ptr[:-1], lengths) + np.arange(row_ptr[-1])
        tile_ptr = np.searchsorted(tile_of_row[rows], np.arange(self.tile_ptr.shape[0])).astype(np.int64)
        layout = CsrLayout(row_ptr, self.col[pairs], order.astype(np.int64), tile_ptr, self.col_ptr,
                           self.col_gid, self.num_gaussians, _by_gaussian=self._by_gaussian)
        return layout, pairs

    @property
    def ids(self) -> np.ndarray:  # [M] int32, the Gaussian of every pair
        return self.col_gid[self.col]

    def columns_by_gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        """(g_ptr [N + 1], g_cols [U]): each Gaussian's columns in tile order (kept)."""
        if self._by_gaussian is None:
            g_ptr = np.zeros(self.num_gaussians + 1, np.int64)
            g_cols = np.empty(self.col_gid.shape[0], np.int64)
            with LAUNCH_LOCK:
                _kernels().group_columns(self.col_gid, self.num_gaussians, g_ptr, g_cols)
            self._by_gaussian = (g_ptr, g_cols)
        return self._by_gaussian

    def rows(self) -> Tensor:  # [M] long, the pixel (index into ``pixels``) of every pair
        counts = torch.from_numpy(np.diff(self.row_ptr))
        return torch.from_numpy(self.order)[torch.repeat_interleave(
            torch.arange(counts.numel()), counts)]


def _consts(dtype: torch.dtype) -> np.ndarray:
    return torch.tensor([0.5, ALPHA_MAX, ALPHA_MIN, T_MIN, 1.0, 0.0], dtype=dtype).numpy()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _walk(kern, tile: Tensor, list_ptr: np.ndarray, list_ids: np.ndarray, xs, ys, m, con,
          op, lim, k) -> tuple[CsrLayout, np.ndarray, np.ndarray, np.ndarray]:
    """All rows' pairs: (layout without num_gaussians set, w [M], raw alpha [M], T_final [P]).

    One thread per tile walks its rows into the scratch; entries blended at least once
    become the tile's columns; rows are compacted (longer ones than the scratch walked again).
    """
    order_t = torch.sort(tile, stable=True).indices
    order = _np(order_t)
    tile_sorted = _np(tile[order_t])
    tile_ptr = np.searchsorted(tile_sorted, np.arange(list_ptr.shape[0])).astype(np.int64)
    rec = np.empty((list_ids.shape[0], 7), xs.dtype)
    kern.pack_records(list_ids, m, con, op, lim, k, rec)
    P = xs.shape[0]
    counts = np.zeros(P, np.int64)
    T = np.empty(P, xs.dtype)
    used = np.zeros(list_ids.shape[0], np.uint8)
    cap = int(min(CAP_MAX, max(2, SCRATCH_BYTES // max(1, P * (4 + 2 * xs.itemsize)))))
    s_ent, s_w, s_a = _scratch(P * cap, xs.dtype)
    kern.walk_tiles(tile_ptr, order, xs, ys, list_ptr, rec, k, cap, s_ent, s_w, s_a, counts,
                    T, used)
    row_ptr = np.zeros(P + 1, np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    cum_used = np.zeros(list_ids.shape[0] + 1, np.int64)
    np.cumsum(used, out=cum_used[1:])
    col_of_ent = (cum_used[1:] - 1).astype(np.int32)
    col_gid = list_ids[used.view(bool)].astype(np.int32)
    col_ptr = cum_used[list_ptr]
    M = int(row_ptr[-1])
    col, w, ar = np.empty(M, np.int32), np.empty(M, xs.dtype), np.empty(M, xs.dtype)
    kern.compact_rows(row_ptr, counts, cap, s_ent, s_w, s_a, col_of_ent, col, w, ar)
    redo = np.flatnonzero(counts > cap)
    if redo.size:  # rows longer than the scratch: walk them again, writing in place
        tile_of_row = tile_sorted[redo]
        kern.rewalk_rows(redo, tile_of_row, order, xs, ys, list_ptr, rec, k, row_ptr,
                         col_of_ent, used, col, w, ar)
    layout = CsrLayout(row_ptr, col, order, tile_ptr, col_ptr, col_gid, 0)
    return layout, w, ar, T


_SCRATCH: dict = {}


def release_scratch() -> None:
    """Free the walk's kept scratch rows (at most ``SCRATCH_BYTES``; 384 MiB by default)."""
    with LAUNCH_LOCK:
        _SCRATCH.clear()


def _scratch(size: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The forward walk's scratch rows (entries, weights, raw alphas) of ``size`` entries.

    Kept between calls because fresh pages cost a page fault each on every render. Bounded:
    one dtype's buffers at a time and never more than ``SCRATCH_BYTES`` (a larger request,
    only possible with more than ~16M pixels in one call, is allocated for that call alone);
    ``release_scratch()`` frees them. The contents are never read before the walk writes
    them, so reuse cannot change results. Callers hold LAUNCH_LOCK.
    """
    dtype = np.dtype(dtype)
    if size * (4 + 2 * dtype.itemsize) > SCRATCH_BYTES:
        return np.empty(size, np.int32), np.empty(size, dtype), np.empty(size, dtype)
    buf = _SCRATCH.get(dtype.str)
    if buf is None or buf[0].shape[0] < size:
        _SCRATCH.clear()  # free the old buffers before allocating the new ones
        buf = (np.empty(size, np.int32), np.empty(size, dtype), np.empty(size, dtype))
        _SCRATCH[dtype.str] = buf
    return buf[0][:size], buf[1][:size], buf[2][:size]


class _CsrWeights(Function):
    """(means2d, conics, opacities) -> (w [M], T_final [P]); the layout goes out via holder."""

    @staticmethod
    @_locked
    def forward(ctx, means2d, conics, opacities, xy, tile, list_ptr, list_ids,  # noqa: D102
                holder):
        kern = _kernels()
        dt = means2d.dtype
        xs, ys = _np(xy[:, 0]), _np(xy[:, 1])
        op = opacities.detach().double()
        lim = torch.log(op.clamp_min(1e-30) / ALPHA_MIN)  # sigma beyond: alpha < 1/255
        lim = (lim + 1e-4 * (1.0 + lim.abs())).to(dt)
        m, con, k = _np(means2d), _np(conics), _consts(dt)
        opn = _np(opacities)
        layout, w, ar, T = _walk(kern, tile, list_ptr, list_ids, xs, ys, m, con, opn,
                                 _np(lim), k)
        layout.num_gaussians = int(means2d.shape[0])
        holder["layout"] = layout
        ctx.layout = layout
        ctx.args = (xs, ys, m, con, opn, k, ar)
        w_t, T_t = torch.from_numpy(w), torch.from_numpy(T)
        ctx.save_for_backward(w_t, T_t)
        return w_t, T_t

    @staticmethod
    @_locked
    def backward(ctx, g_w, g_T):  # noqa: D102
        w, T = ctx.saved_tensors
        lay: CsrLayout = ctx.layout
        xs, ys, m, con, op, k, ar = ctx.args
        g_w = torch.zeros_like(w) if g_w is None else g_w.to(w.dtype)
        gT_Tf = torch.zeros_like(T) if g_T is None else g_T.to(T.dtype) * T
        kern = _kernels()
        U = lay.col_gid.shape[0]
        crec = np.empty((U, 5), xs.dtype)
        kern.column_records(lay.col_gid, m, con, crec)
        part = np.zeros((U, 6), xs.dtype)
        kern.weights_bwd_tiles(lay.tile_ptr, lay.order, xs, ys, lay.row_ptr, lay.col, crec,
                               _np(w), ar, k, _np(g_w), _np(gT_Tf), part)
        part[:, 5] /= op[lay.col_gid]  # sum of dL/dalpha * alpha / o = dL/do
        out = np.zeros((lay.num_gaussians, 6), xs.dtype)
        kern.reduce_columns(*lay.columns_by_gaussian(), part, out)
        out_t = torch.from_numpy(out)
        return (out_t[:, :2].contiguous(), out_t[:, 2:5].contiguous(), out_t[:, 5].contiguous(),
                None, None, None, None, None)


def tile_lists_numba(
    proj: Projection, opacities: Tensor, width: int, height: int, tile_size: int,
    occupied: Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``binning.tile_lists`` compiled: (list_ptr [T + 1], list_ids [I]) int64 arrays."""
    tiles_x, tiles_y = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    g, box, uv, r2 = depth_sorted_boxes(proj, opacities, width, height)
    occ = (np.ones(tiles_x * tiles_y, np.bool_) if occupied is None else _np(occupied))
    con = proj.conics.detach()[g]
    b = _np(box)
    with LAUNCH_LOCK:
        return _kernels().bin_tiles(_np(g), b[:, 0].copy(), b[:, 1].copy(), b[:, 2].copy(),
                                    b[:, 3].copy(), _np(uv), _np(con), _np(r2), tile_size,
                                    width, height, tiles_x, occ)


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
        list_ptr, list_ids = tile_lists_numba(proj, opacities, width, height, ts, occupied)
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
    def forward(ctx, w, attributes, layout, gaussians=None):  # noqa: D102
        attr = attributes.detach().contiguous()
        ctx.layout = layout
        ctx.save_for_backward(w, attr)
        if layout.use_sparse(attr.shape[1]):
            ctx.compact = _compact(layout, gaussians)
            return _sparse_forward(layout, w.detach(), attr, ctx.compact[0])
        a = attr.numpy()
        out = np.zeros((layout.row_ptr.shape[0] - 1, a.shape[1]), a.dtype)
        kc = _composite_kernels()
        if layout.use_gemm(a.shape[1]):
            kc.fwd_gemm(layout.tile_ptr, layout.col_ptr, layout.order, layout.row_ptr,
                        layout.col, layout.col_gid, _np(w), a, out)
        elif a.shape[1]:
            kc.fwd_rows(layout.row_ptr, layout.col, layout.col_gid, layout.order, _np(w), a,
                        out)
        return torch.from_numpy(out)

    @staticmethod
    @_locked
    def backward(ctx, g_out):  # noqa: D102
        w, attr = ctx.saved_tensors
        lay: CsrLayout = ctx.layout
        need_w, need_a = bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])
        if lay.use_sparse(attr.shape[1]):
            return (*_sparse_backward(lay, w.detach(), attr, g_out.to(attr.dtype), need_w, need_a, *ctx.compact),
                    None, None)
        a = attr.numpy()
        go = _np(g_out.to(attr.dtype))
        gw = np.zeros(lay.num_pairs if need_w else 0, go.dtype)
        part = np.zeros((lay.col_gid.shape[0] if need_a else 0, go.shape[1]), go.dtype)
        if go.shape[1]:
            kc = _composite_kernels()
            fn = kc.bwd_gemm if lay.use_gemm(go.shape[1]) else kc.bwd_rows
            args = (lay.tile_ptr, lay.col_ptr) if fn is kc.bwd_gemm else (lay.tile_ptr,)
            fn(*args, lay.order, lay.row_ptr, lay.col, lay.col_gid, _np(w), a, go, need_w,
               need_a, gw, part)
        g_attr = None
        if need_a:
            ga = np.zeros(a.shape, go.dtype)
            if go.shape[1]:
                _kernels().reduce_columns(*lay.columns_by_gaussian(), part, ga)
            g_attr = torch.from_numpy(ga)
        return (torch.from_numpy(gw) if need_w else None), g_attr, None, None


def _csr(crow: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, values, size=shape, check_invariants=False)


def _compact(lay: CsrLayout, gaussians: Tensor | None) -> tuple[Tensor, Tensor]:
    """(gaussian column of every pair, Wᵀ row pointers) with the Gaussians numbered within
    ``gaussians`` (ascending, covering every pair's Gaussian: ``composite`` checks), or over
    all N when None."""
    _, gid, _, _, g_ptr, _, _ = lay.sparse_pattern()
    if gaussians is None:
        return gid, g_ptr
    g = gaussians.cpu().numpy().astype(np.int64).reshape(-1)
    index = np.full(lay.num_gaussians, -1, np.int32)
    index[g] = np.arange(g.size, dtype=np.int32)
    cols = index[lay.ids]
    ptr = g_ptr.numpy()  # Gaussians outside ``g`` own no pairs: their pointers repeat
    return torch.from_numpy(cols), torch.from_numpy(np.concatenate([[0], ptr[g + 1]]).astype(np.int32))


def _sparse_forward(lay: CsrLayout, w: Tensor, attr: Tensor, cols: Tensor) -> Tensor:
    """W @ attr as one CSR x dense product (rows in layout order, then put in pixel order).
    Each output row is one thread's ordered sum over its pairs: thread-count independent."""
    crow, _, _, inverse, *_ = lay.sparse_pattern()
    out = _csr(crow, cols, w, (crow.shape[0] - 1, attr.shape[0])) @ attr
    return out.index_select(0, inverse)


def _sparse_backward(lay: CsrLayout, w: Tensor, attr: Tensor, g_out: Tensor, need_w: bool,
                     need_a: bool, cols: Tensor, g_ptr: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """dL/dw at the pairs = g_out[row] . attr[gaussian] (torch's sampled_addmm, one dot per
    pair) and dL/dattr = Wᵀ @ g_out (CSR product over each Gaussian's pairs in pair order)."""
    crow, _, order, _, _, g_rows, g_pairs = lay.sparse_pattern()
    g_rows_order = g_out.index_select(0, order)  # [R, C] rows in layout order
    g_w = g_attr = None
    if need_w:
        pattern = _csr(crow, cols, w.new_zeros(w.shape[0]), (crow.shape[0] - 1, attr.shape[0]))
        g_w = torch.sparse.sampled_addmm(pattern, g_rows_order, attr.T, beta=0.0).values()
    if need_a:
        wt = _csr(g_ptr, g_rows, w.index_select(0, g_pairs), (attr.shape[0], crow.shape[0] - 1))
        g_attr = wt @ g_rows_order
    return g_w, g_attr


def composite_csr(layout: CsrLayout, values: Tensor, attributes: Tensor, gaussians: Tensor | None = None) -> Tensor:
    """W @ attributes [P, C] (differentiable in both) for pair-list weights; ``attributes``
    holds the rows of ``gaussians`` only when given (ascending, every pair's Gaussian; the
    torch CSR form only, ``layout.use_sparse``)."""
    if gaussians is not None and not layout.use_sparse(attributes.shape[1]):
        raise ValueError("composite_csr: gaussians= needs the sparse form; expand the attributes")
    return _CsrComposite.apply(values.to(attributes.dtype), attributes, layout, gaussians)
