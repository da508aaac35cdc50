"""liftgs: 3D vision-language grounding trained by render-supervised distillation (LIFT-GS)."""

__version__ = "0.1.0"

__all__ = ["__version__", "configure_runtime"]


def __getattr__(name: str):
    # Lazy: ``import liftgs`` stays light (no torch/numba import) until the set-up is asked for.
    if name == "configure_runtime":
        from liftgs.runtime import configure_runtime

        return configure_runtime
    raise AttributeError(f"module 'liftgs' has no attribute {name!r}")
