"""liftgs.model: point encoder, Gaussian head, grounding decoder and the assembled LIFT-GS model.

Importing this package loads spconv (with a CPU shim, see ``_spconv_shim``).
"""

from liftgs.model.config import ModelConfig
from liftgs.model.liftgs import LiftGS, PointEncoding, build_liftgs

__all__ = ["ModelConfig", "LiftGS", "PointEncoding", "build_liftgs"]

from liftgs.model.inference import GroundingResult, ground, ground_expressions, ground_tokens  # noqa: E402

__all__ += ["GroundingResult", "ground", "ground_expressions", "ground_tokens"]
