"""Submanifold sparse 3D convolution in plain torch (gather -> matmul -> scatter-sum).

This is the computation spconv's CPU path performs (rulebook of neighbour pairs per kernel
offset), written with torch ops so that it is bit-reproducible with several threads:
spconv 2.3.8's CPU path gave run-to-run differences with 2 threads (breaking exact resume)
and, on some dense voxel sets, results that disagree with a dense ``conv3d`` reference.
``tests/test_sparse_conv.py`` compares values and gradients with dense ``conv3d``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OFFSETS_3 = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)  # [27, 3] (x, y, z)


@dataclass
class Rulebook:
    """Neighbour pairs of a voxel set for a 3x3x3 kernel, sorted by kernel offset:
    for offset k, ``out[dst[s:e]] += in[src[s:e]] @ W[k]`` with ``(s, e) = bounds[k]``."""

    num_voxels: int
    src: Tensor  # [n_pairs] int64
    dst: Tensor  # [n_pairs] int64
    bounds: list[tuple[int, int]]  # 27 slices of src / dst
    dst_csr: tuple[Tensor, Tensor] | None = None  # (crow [V+1], col [n_pairs]): pairs grouped by dst
    src_csr: tuple[Tensor, Tensor] | None = None  # the same grouped by src
    neighbour: Tensor | None = None  # [27, V] input voxel at offset k of voxel v, -1 = none

    def __post_init__(self) -> None:
        if self.dst_csr is None:
            self.dst_csr = _csr_pattern(self.dst, self.num_voxels)
        if self.src_csr is None:
            self.src_csr = _csr_pattern(self.src, self.num_voxels)


def _csr_pattern(rows: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """Row pointers and column (pair) indices of the 0/1 matrix [num_rows, n_pairs] with a one
    at (rows[j], j); columns within a row stay in pair order, so sums are in a fixed order."""
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=num_rows)
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return crow, order


def scatter_rows(values: Tensor, pattern: tuple[Tensor, Tensor], num_rows: int) -> Tensor:
    """out[r] = sum of values[j] over pairs j in row r, as a CSR matrix product ([n_pairs, C] ->
    [num_rows, C]). Several times faster than ``index_add_`` on CPU and row-parallel, so the
    summation order does not depend on the thread count."""
    crow, col = pattern
    low = values.dtype in (torch.bfloat16, torch.float16)  # summed in float32 (and MKL's CSR
    # product has no bfloat16 kernel), returned in the input's dtype
    src = values.float() if low else values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(crow, col, src.new_ones(col.shape[0]),
                                         size=(num_rows, values.shape[0]), check_invariants=False)
    with torch.autocast(values.device.type, enabled=False):  # autocast would cast the product back
        out = matrix @ src
    return out.to(values.dtype) if low else out


def build_rulebook(coords: Tensor, max_dense_cells: int = 1 << 26) -> Rulebook:
    """Pairs with coords[src] = coords[dst] + offset_k in the same scene; ``coords`` [V, 4] (b, x, y, z).

    Neighbours are looked up in a dense index grid when the batch's bounding grid has at most
    ``max_dense_cells`` cells (a room at 5 cm: ~10^6), else by binary search over sorted keys.
    """
    coords = coords.long()
    V = coords.shape[0]
    device = coords.device
    xyz = coords[:, 1:] + 1  # room for the -1 offset
    ext = (xyz.max(0).values + 2) if V else torch.ones(3, dtype=torch.long, device=device)
    X, Y, Z = (int(e) for e in ext)
    B = int(coords[:, 0].max()) + 1 if V else 1
    # key of (b, x, y, z) + offset d is key + (dx * Y + dy) * Z + dz: one add per offset
    keys = ((coords[:, 0] * X + xyz[:, 0]) * Y + xyz[:, 1]) * Z + xyz[:, 2]  # [V]
    shifts = (OFFSETS_3[:, 0] * Y + OFFSETS_3[:, 1]) * Z + OFFSETS_3[:, 2]  # [27]
    if B * X * Y * Z <= max_dense_cells and device.type == "cpu":
        from liftgs.modules.rulebook_kernel import dense_neighbours

        neighbour = torch.from_numpy(dense_neighbours(keys.numpy(), shifts.numpy(), B * X * Y * Z))
    elif B * X * Y * Z <= max_dense_cells:
        table = torch.full((B * X * Y * Z,), -1, dtype=torch.long, device=device)
        table[keys] = torch.arange(V, device=device)
        neighbour = table[keys[None, :] + shifts.to(device)[:, None]]  # [27, V], -1 = empty
    else:
        sorted_keys, order = torch.sort(keys)
        queries = keys[None, :] + shifts.to(device)[:, None]  # [27, V]
        pos = torch.searchsorted(sorted_keys, queries).clamp_max(max(V - 1, 0))
        hit = sorted_keys[pos] == queries if V else torch.zeros(27, 0, dtype=torch.bool, device=device)
        neighbour = torch.where(hit, order[pos], torch.full_like(pos, -1))
    if neighbour.device.type == "cpu":
        return _rulebook_from_neighbours_compiled(neighbour)
    return _rulebook_from_neighbours(neighbour)


def _rulebook_from_neighbours_compiled(neighbour: Tensor) -> Rulebook:
    """:func:`_rulebook_from_neighbours` as one compiled pass over the table (CPU): the torch
    version's boolean-mask gathers are a sizeable part of a training step's forward at full
    resolution. Same arrays, tested against it."""
    from liftgs.modules.rulebook_kernel import rulebook_arrays

    src, dst, counts, crow, dst_col, src_col = (torch.from_numpy(a) for a in
                                                 rulebook_arrays(neighbour.contiguous().numpy()))
    bounds, start = [], 0
    for n in counts.tolist():
        bounds.append((start, start + n))
        start += n
    return Rulebook(neighbour.shape[1], src, dst, bounds, dst_csr=(crow, dst_col), src_csr=(crow, src_col),
                    neighbour=neighbour)


def _rulebook_from_neighbours(neighbour: Tensor) -> Rulebook:
    """Pairs from the neighbour table [27, V] (-1 = none), ordered by offset then voxel.

    The CSR patterns come without sorting: grouping by ``dst`` is the table read voxel-major,
    and grouping by ``src`` uses the kernel's symmetry (u is v's neighbour at +d exactly when
    v is u's neighbour at -d, and offset 26 - k = -offset k).
    """
    V = neighbour.shape[1]
    valid = neighbour >= 0  # [27, V]
    nz = torch.nonzero(valid)  # [n_pairs, 2] (k, v), offset-major
    dst, src = nz[:, 1], neighbour[nz[:, 0], nz[:, 1]]
    counts = valid.sum(1)
    starts = torch.cumsum(counts, 0) - counts
    position = starts[:, None] + torch.cumsum(valid, 1) - 1  # [27, V] pair index of (k, v)
    per_voxel = valid.sum(0)  # pairs per output voxel = pairs per input voxel (symmetry)
    crow = torch.cat([per_voxel.new_zeros(1), torch.cumsum(per_voxel, 0)])
    dst_col = position.T[valid.T]
    flipped = neighbour.flip(0)  # row k: neighbour at -offset k
    src_pos = torch.gather(position, 1, flipped.clamp_min(0))  # [27, V]
    src_col = src_pos.T[(flipped >= 0).T]
    bounds, start = [], 0
    for n in counts.tolist():
        bounds.append((start, start + n))
        start += n
    return Rulebook(V, src, dst, bounds, dst_csr=(crow, dst_col), src_csr=(crow, src_col), neighbour=neighbour)


class _SubmanifoldConv(torch.autograd.Function):
    """Rulebook convolution with a hand-written backward.

    All pairs are gathered in one ``index_select``, multiplied per kernel offset into one
    preallocated buffer and summed back per voxel with one CSR product. The gathered rows are
    kept for the weight gradient when they are at most ``SAVE_GATHERED_MAX`` elements (the CPU
    preset: ~2 M at full resolution), else the backward gathers them again; both give the
    same numbers. One autograd node replaces ~80 small ones.
    """

    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, src: Tensor, dst: Tensor, bounds: list[tuple[int, int]],
                num_voxels: int, dst_csr: tuple[Tensor, Tensor], src_csr: tuple[Tensor, Tensor]) -> Tensor:
        gathered = torch.index_select(features, 0, src)  # [n_pairs, Cin]
        products = features.new_empty(src.shape[0], weight.shape[2])  # [n_pairs, Cout]
        for k, (s, e) in enumerate(bounds):
            if e > s:
                torch.mm(gathered[s:e], weight[k], out=products[s:e])
        out = scatter_rows(products, dst_csr, num_voxels)
        keep = ctx.needs_input_grad[1] and gathered.numel() <= SAVE_GATHERED_MAX
        ctx.save_for_backward(features, weight, src, dst, gathered if keep else None)
        ctx.bounds, ctx.src_csr = bounds, src_csr
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        features, weight, src, dst, gathered = ctx.saved_tensors
        grad_pairs = torch.index_select(grad_out.contiguous(), 0, dst)  # [n_pairs, Cout]
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_feat = None
        if grad_w is not None and gathered is None:
            gathered = torch.index_select(features, 0, src)
        back = features.new_empty(src.shape[0], weight.shape[1]) if ctx.needs_input_grad[0] else None
        for k, (s, e) in enumerate(ctx.bounds):
            if e == s:
                continue
            if grad_w is not None:
                torch.mm(gathered[s:e].T, grad_pairs[s:e], out=grad_w[k])
            if back is not None:
                torch.mm(grad_pairs[s:e], weight[k].T, out=back[s:e])
        if back is not None:
            grad_feat = scatter_rows(back, ctx.src_csr, features.shape[0])
        return grad_feat, grad_w, None, None, None, None, None, None


SAVE_GATHERED_MAX = 1 << 23  # elements of gathered input rows kept from forward for backward

IM2COL_MAX_CHANNELS = 8


def submanifold_conv(features: Tensor, rulebook: Rulebook, weight: Tensor) -> Tensor:
    """features [V, Cin], weight [27, Cin, Cout] -> [V, Cout]; output voxels = input voxels.

    Per kernel offset: gather, matmul; then one fixed-order scatter-sum (deterministic on CPU).
    A narrow input that needs no gradient (the stem's xyz + rgb) goes through
    :func:`im2col_conv` instead."""
    if torch.is_autocast_enabled(features.device.type):  # mixed precision: the autocast dtype,
        # as autocast would give a matmul (the rulebook products are a custom autograd node)
        dtype = torch.get_autocast_dtype(features.device.type)
        features, weight = features.to(dtype), weight.to(dtype)
    if (rulebook.neighbour is not None and not features.requires_grad
            and features.shape[1] <= IM2COL_MAX_CHANNELS):
        return im2col_conv(features, rulebook.neighbour, weight)
    return _SubmanifoldConv.apply(features, weight, rulebook.src, rulebook.dst, rulebook.bounds,
                                  rulebook.num_voxels, rulebook.dst_csr, rulebook.src_csr)


def im2col_conv(features: Tensor, neighbour: Tensor, weight: Tensor) -> Tensor:
    """The same convolution as one GEMM: each voxel's 27 neighbours' features side by side
    ([V, 27 * Cin], zeros where a neighbour is missing) times the stacked weight.

    For a narrow input this is cheaper than the pair route, whose per-pair products and their
    gradients are Cout wide: the weight gradient becomes one [27 Cin, V] x [V, Cout] product.
    Used only when ``features`` needs no gradient (its backward would be a scatter)."""
    V, C = features.shape
    padded = torch.cat([features, features.new_zeros(1, C)])  # row V = the missing neighbour
    index = torch.where(neighbour >= 0, neighbour, V).T.contiguous()  # [V, 27]
    columns = F.embedding(index, padded).reshape(V, -1)  # [V, 27 * Cin]
    return columns @ weight.reshape(-1, weight.shape[2])


class SubMConv3d(nn.Module):
    """3x3x3 submanifold convolution without bias; weight [27, Cin, Cout] (offsets (dx, dy, dz)
    in {-1, 0, 1}^3, dx slowest; the same layout as spconv's [Cout, 3, 3, 3, Cin] permuted)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(27, in_channels, out_channels))
        bound = math.sqrt(3.0 / (27 * in_channels))  # variance 1 / fan_in
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, features: Tensor, rulebook: Rulebook) -> Tensor:
        return submanifold_conv(features, rulebook, self.weight)
