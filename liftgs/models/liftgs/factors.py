"""Mask logits in factored form, evaluated only where they are needed.

The LIFT-GS mask head is linear after its hidden layer, so a proposal's logit at a point is a
dot product of the point's voxel basis with the proposal's folded embedding
(:meth:`liftgs.models.liftgs.model.LiftGS.fold_mask_embeddings`). Pre-training renders only the
Gaussians a view sees (about 40 % of a room), so the model hands the recipe these factors
instead of every point's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from liftgs.types import Grounding


@dataclass
class MaskFactors:
    """Point i's logit for proposal j is ``basis[rows[i]] . weights[j] + offsets[j]`` (``rows``
    maps points to the voxels ``basis`` holds, None = one row per point). Lets a caller
    evaluate the logits of only some points, e.g. the Gaussians a view actually sees."""

    basis: Tensor | None  # [V, D'] per voxel (or per point); None: ``basis_fn`` computes rows
    weights: Tensor  # [m, D']
    offsets: Tensor  # [m]
    rows: Tensor | None = None  # [N] long, the basis row of each point
    basis_fn: Callable[[Tensor | None], Tensor] | None = None  # voxel ids [U] (None = all) -> [U, D']
    basis_inputs: tuple[Tensor, ...] = ()  # parameter views basis_fn reads: held here so that
    # DDP (find_unused_parameters) sees them in the forward's outputs

    def __post_init__(self) -> None:
        if self.basis is None and self.basis_fn is None:
            raise ValueError("MaskFactors needs basis or basis_fn")

    def logits(self, index: Tensor | None = None) -> Tensor:
        """[m, N] (every point) or [m, len(index)] (points ``index``)."""
        return self.point_logits(index).T

    def point_logits(self, index: Tensor | None = None) -> Tensor:
        """The same point-major: [N, m] or [len(index), m] (one gather, one product)."""
        rows = self._rows(index)
        if self.basis is None and rows is not None:  # the product per voxel, then the gather
            voxels, inverse = torch.unique(rows, return_inverse=True)
            return torch.addmm(self.offsets, self.basis_fn(voxels), self.weights.T).index_select(0, inverse)
        return torch.addmm(self.offsets, self._basis_rows(rows), self.weights.T)

    def point_basis(self, index: Tensor | None = None) -> Tensor:
        """The basis row of every point [N, D'] (or of points ``index``): ``point_logits`` is
        ``basis @ weights.T + offsets``. Query sets over the same scene share it."""
        rows = self._rows(index)
        if self.basis is None and rows is not None:  # each voxel's basis once
            voxels, inverse = torch.unique(rows, return_inverse=True)
            return self.basis_fn(voxels).index_select(0, inverse)
        return self._basis_rows(rows)

    def _rows(self, index: Tensor | None) -> Tensor | None:
        """The basis rows of points ``index`` (None = every point in order)."""
        if self.rows is None:
            return index
        return self.rows if index is None else self.rows.index_select(0, index)

    def _basis_rows(self, rows: Tensor | None) -> Tensor:
        if self.basis is None:
            return self.basis_fn(None)
        return self.basis if rows is None else self.basis.index_select(0, rows)

    @staticmethod
    def stack(factors: list["MaskFactors"]) -> "MaskFactors | None":
        """One factor set for the proposals of several (the decoder layers'), when they share
        the basis: their logits then come from one product. None if they do not."""
        first = factors[0]
        if any(f.basis is not first.basis or f.basis_fn is not first.basis_fn or f.rows is not first.rows
               for f in factors):
            return None
        return MaskFactors(first.basis, torch.cat([f.weights for f in factors]),
                           torch.cat([f.offsets for f in factors]), first.rows, first.basis_fn, first.basis_inputs)


@dataclass
class FactoredGrounding(Grounding):
    """A :class:`~liftgs.types.Grounding` whose mask logits are held as :class:`MaskFactors`
    (``mask_logits`` is None): :meth:`logits_at` evaluates them for the points asked for.
    Returned by ``LiftGS.forward(..., lazy_masks=True)``."""

    mask_factors: MaskFactors | None = None

    def __post_init__(self) -> None:
        if self.mask_factors is None:
            raise ValueError("FactoredGrounding needs mask_factors")

    def logits_at(self, index: Tensor | None = None) -> Tensor:
        return self.mask_factors.logits(index)


def stacked_factors(layers: list[Grounding]) -> MaskFactors | None:
    """The decoder layers' factors as one set when every layer is factored over one basis
    (their logits then come from one product); None otherwise."""
    if not all(isinstance(layer, FactoredGrounding) for layer in layers):
        return None
    return MaskFactors.stack([layer.mask_factors for layer in layers])
