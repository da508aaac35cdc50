"""The built-in synthetic benchmark (issue 2 item 5).

Procedurally generated rooms rendered by pybullet's TinyRenderer into RGB, metric depth and
instance ids; a sensor point cloud fused from those depths exactly like a real scan; captions
and Sr3d-style referring expressions true in the generated geometry.

``generate_room(config, seed) -> Scene`` builds one room in memory;
``generate_dataset(config, out, rooms, seed)`` writes a dataset root atomically;
``liftgs synth --preset quick|standard --rooms N --seed S --out DIR`` is the command.
"""

from liftgs.synth.config import PRESETS, QUICK, STANDARD, SynthConfig
from liftgs.synth.generate import generate_room, room_seed

__all__ = ["SynthConfig", "PRESETS", "QUICK", "STANDARD", "generate_room", "room_seed", "generate_dataset"]


def __getattr__(name: str):
    if name == "generate_dataset":  # imports the scene-directory writer only when used
        from liftgs.synth.dataset import generate_dataset

        return generate_dataset
    raise AttributeError(name)
