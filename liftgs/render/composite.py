"""Sparse pixel x Gaussian weights and compositing: values = W @ attributes + T_final * bg.

Compositing is linear in the attributes (ARCHITECTURE.md, "Rendering"), so one ``W`` per
view serves RGB, a feature map and hundreds of mask probabilities alike (paper Sec. 3.2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.autograd import Function

from liftgs.render.projection import Projection


@dataclass
class RenderWeights:
    """Sparse weights of one view, rows = rendered pixels, columns = Gaussians (CSR).

    Entries of a row are in front-to-back order. ``values`` and ``transmittance`` carry
    gradients back to the geometry; everything else is integer structure without grad.
    """

    pixels: Tensor  # [P] long, flat pixel ids y * W + x
    rowptr: Tensor  # [P + 1] long, CSR row pointers
    rows: Tensor  # [M] long, row (index into ``pixels``) of each entry
    gaussian_ids: Tensor  # [M] long, column of each entry
    values: Tensor  # [M] w = alpha * T
    transmittance: Tensor  # [P] final transmittance T
    width: int
    height: int
    num_gaussians: int
    projection: Projection | None = None
    _transpose: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def num_pixels(self) -> int:
        return int(self.pixels.numel())

    @property
    def alpha(self) -> Tensor:  # [P]
        return 1.0 - self.transmittance

    def transpose_structure(self) -> tuple[Tensor, Tensor]:
        """(perm [M], rowptr_t [N + 1]): entries sorted by Gaussian, cached for backward."""
        if self._transpose is None:
            perm = torch.sort(self.gaussian_ids, stable=True).indices
            counts = torch.bincount(self.gaussian_ids, minlength=self.num_gaussians)
            rowptr_t = torch.zeros(self.num_gaussians + 1, dtype=torch.long, device=perm.device)
            rowptr_t[1:] = counts.cumsum(0)
            self._transpose = (perm, rowptr_t)
        return self._transpose

    def to_dense(self) -> Tensor:  # [P, N], for tests and debugging
        W = self.values.new_zeros(self.num_pixels, self.num_gaussians)
        return W.index_put((self.rows, self.gaussian_ids), self.values, accumulate=True)


def _csr(rowptr: Tensor, cols: Tensor, vals: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(rowptr, cols, vals, size=shape, check_invariants=False)


class _SparseMatmul(Function):
    """out = W @ A for CSR ``W``; grads to W's values (sampled dense product) and to ``A``."""

    @staticmethod
    def forward(ctx, values, attributes, rowptr, cols, perm, rowptr_t, rows):  # noqa: D102
        P, N = rowptr.numel() - 1, attributes.shape[0]
        ctx.save_for_backward(values, attributes, rowptr, cols, perm, rowptr_t, rows)
        if values.numel() == 0:
            return attributes.new_zeros(P, attributes.shape[1])
        return _csr(rowptr, cols, values, (P, N)) @ attributes

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        values, attributes, rowptr, cols, perm, rowptr_t, rows = ctx.saved_tensors
        P, N = rowptr.numel() - 1, attributes.shape[0]
        grad_values = grad_attr = None
        empty = values.numel() == 0
        grad_out = grad_out.contiguous()
        if ctx.needs_input_grad[0]:
            if empty:
                grad_values = torch.zeros_like(values)
            else:
                mask = _csr(rowptr, cols, torch.ones_like(values), (P, N))
                sampled = torch.sparse.sampled_addmm(
                    mask, grad_out, attributes.detach().T.contiguous(), beta=0.0
                )
                grad_values = sampled.values()
        if ctx.needs_input_grad[1]:
            if empty:
                grad_attr = torch.zeros_like(attributes)
            else:
                Wt = _csr(rowptr_t, rows[perm], values.detach()[perm], (N, P))
                grad_attr = Wt @ grad_out
        return grad_values, grad_attr, None, None, None, None, None


def composite(
    weights: RenderWeights,
    attributes: Tensor,  # [N, C]
    background: Tensor | None = None,  # [C]
) -> tuple[Tensor, Tensor]:
    """Composite per-Gaussian attributes: (values [P, C], alpha [P]).

    values = W @ attributes + T_final * background. Call it as often as needed on one
    ``weights``: the geometry is not recomputed.
    """
    if attributes.ndim != 2 or attributes.shape[0] != weights.num_gaussians:
        raise ValueError(
            f"attributes must be [N={weights.num_gaussians}, C], got {list(attributes.shape)}"
        )
    perm, rowptr_t = weights.transpose_structure()
    vals = weights.values.to(attributes.dtype)
    out = _SparseMatmul.apply(
        vals, attributes, weights.rowptr, weights.gaussian_ids, perm, rowptr_t, weights.rows
    )
    T = weights.transmittance.to(attributes.dtype)
    if background is not None:
        bg = background.to(attributes)
        if bg.shape != (attributes.shape[1],):
            raise ValueError(f"background must be [C={attributes.shape[1]}], got {list(bg.shape)}")
        out = out + T[:, None] * bg
    return out, 1.0 - T
