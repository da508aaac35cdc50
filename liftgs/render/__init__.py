"""liftgs.render: differentiable Gaussian splatting, any number of channels.

project (EWA) -> bin to tiles (no grad) -> sparse weights W -> composite W @ attributes.
The weights come from one of the backends in :mod:`liftgs.render.backends` (numba on CPU,
vectorised torch blocks, the dense reference; gsplat renders whole images on CUDA, and
the training recipes composite through it there: :func:`composite_view`).
See docs/renderer.md.
"""

from liftgs.render.api import BACKENDS, composite_view, render, render_weights, resolve_rasterizer
from liftgs.render.backends.gsplat import Rasterize, training_rasterizer
from liftgs.render.backends.gsplat_reference import reference_rasterization
from liftgs.render.backends.reference import dense_weights, render_reference
from liftgs.render.composite import RenderInfo, RenderWeights, composite
from liftgs.render.projection import Projection, covariance_3d, project_gaussians, quat_to_rotmat

__all__ = [
    "BACKENDS", "render", "render_weights", "composite", "composite_view", "resolve_rasterizer",
    "Rasterize", "reference_rasterization", "training_rasterizer", "RenderWeights", "RenderInfo", "Projection",
    "project_gaussians", "covariance_3d", "quat_to_rotmat", "dense_weights", "render_reference",
]
