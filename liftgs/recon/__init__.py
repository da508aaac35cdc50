"""liftgs.recon: per-scene 3D Gaussian Splatting from posed RGB(-D) frames (``liftgs recon``).

GenSplat summary, Key Designs 1: the Gaussians a scene is represented by come from a per-scene
3DGS reconstruction. :func:`reconstruct_scene` fits them on the CPU renderer
(``liftgs.render``) and returns a :class:`~liftgs.io.splat_ply.SplatCloud` and a summary with
held-out PSNR / SSIM; docs/recon.md describes the schedules, the robustness rules and the output.
Names are imported on first use, so ``liftgs recon`` can set up the process before torch loads.
"""

__all__ = ["ReconConfig", "SCHEDULES", "schedule_config", "reconstruct_scene"]


def __getattr__(name: str):
    if name in ("ReconConfig", "SCHEDULES", "schedule_config"):
        from liftgs.recon import config

        return getattr(config, name)
    if name == "reconstruct_scene":
        from liftgs.recon.optimise import reconstruct_scene

        return reconstruct_scene
    raise AttributeError(f"module 'liftgs.recon' has no attribute {name!r}")
