"""liftgs: 3D vision-language grounding trained by render-supervised distillation (LIFT-GS)."""

__version__ = "0.1.0"
