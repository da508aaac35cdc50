"""Fast sparse weights (placeholder: dense reference until the tile rasteriser lands)."""

from __future__ import annotations

from torch import Tensor

from liftgs.render.composite import RenderWeights
from liftgs.render.projection import Projection


def sparse_weights(proj: Projection, opacities: Tensor, pixels: Tensor, width: int,
                   height: int) -> RenderWeights:
    from liftgs.render.api import _weights_from_dense

    return _weights_from_dense(proj, opacities, pixels, width, height)
