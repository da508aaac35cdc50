"""The built-in synthetic benchmark.

Procedurally generated rooms rendered by pybullet's TinyRenderer (CPU, headless) into RGB,
metric depth and instance ids; a sensor point cloud fused from those depths exactly like a
real scan; captions and Sr3d-style referring expressions that are true in the geometry.

* ``generate_room(config, seed, scene_id=None) -> Scene`` builds one room in memory;
* ``generate_dataset(config, out, rooms, seed)`` writes a dataset root atomically
  (``<scene_id>/`` folders via :func:`liftgs.io.scene_dir.write_scene`, ``synth.json``, and
  ``splits.json`` last);
* ``liftgs synth --preset quick|standard --rooms N --seed S --out DIR`` is the command.

Conventions of the generated data (beyond the library-wide ones in :mod:`liftgs.types`):

* the floor spans ``meta["room_bounds"]`` at height ``meta["floor_z"]`` (1 mm, so that the
  5 cm fusion grid does not split floor and walls into two point layers); z is up;
* **floor and walls have instance id -1**; objects are numbered 0..n-1 (``Scene.objects``);
  pixels that see nothing have depth 0 and instance -1;
* ``ObjectInfo.attributes``: ``color`` (one of 11 names), ``size`` (small/medium/large within
  the category), ``caption`` ("a red chair"), ``box`` (axis-aligned, min xyz + max xyz),
  ``support`` (id of the object it rests on, -1 = floor), ``placement``, ``yaw_deg``,
  ``scale``, ``num_points`` (fused points carrying its id);
* expressions: ``relation`` in on / under / next to / between / closest / farthest / largest /
  smallest (definitions in :mod:`liftgs.synth.language`), ``spans`` = the target's category
  noun, ``anchor_ids`` = the objects it is described by, ``meta["num_distractors"]`` = other
  objects of the target's category (Sr3d-style "hard" when > 0);
* a room is a pure function of ``(config, seed)``; room ``i`` of a dataset uses
  ``room_seed(seed, i)``.
"""

from liftgs.synth.config import PRESETS, QUICK, STANDARD, SynthConfig
from liftgs.synth.generate import generate_room, room_seed

__all__ = ["SynthConfig", "PRESETS", "QUICK", "STANDARD", "generate_room", "room_seed", "generate_dataset"]


def __getattr__(name: str):
    if name == "generate_dataset":  # imports the scene-directory writer only when used
        from liftgs.synth.dataset import generate_dataset

        return generate_dataset
    raise AttributeError(name)
