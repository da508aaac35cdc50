"""Short pre-training configs on the fabricated rooms (``liftgs.testing.rooms``)."""

from __future__ import annotations

from pathlib import Path


def pretrain_config(dataset: Path, out: Path, **kw):
    """40 steps of batch 1 at 32 px, grounding loss only; ``kw`` overrides any field."""
    from liftgs.recipes.pretrain import PretrainConfig
    from liftgs.train.optim import OptimConfig

    base = dict(data=dataset / "data", labels=dataset / "labels", out=out, steps=40, batch_size=1,
                image_size=32, num_pixels=512, ckpt_every=20, log_every=1, tensorboard=False,
                progress=False, losses="ground", optim=OptimConfig(lr=1e-3))
    base.update(kw)
    return PretrainConfig(**base)
