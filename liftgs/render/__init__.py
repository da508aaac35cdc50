"""liftgs.render: differentiable Gaussian splatting on CPU, any number of channels.

project (EWA) -> bin to tiles (no grad) -> sparse weights W -> composite W @ attributes.
See docs/renderer.md.
"""

from liftgs.render.api import RenderInfo, render, render_weights
from liftgs.render.composite import RenderWeights, composite
from liftgs.render.projection import Projection, covariance_3d, project_gaussians, quat_to_rotmat
from liftgs.render.reference import dense_weights, render_reference

__all__ = [
    "render", "render_weights", "composite", "RenderWeights", "RenderInfo", "Projection",
    "project_gaussians", "covariance_3d", "quat_to_rotmat", "dense_weights", "render_reference",
]
