"""Plain functions several test modules share (fixtures live in ``tests/conftest.py``).

* ``model_inputs``: a small LIFT-GS config and random rooms batched as the model takes them;
* ``render_scenes``: random Gaussian scenes in front of a camera for renderer tests;
* ``toy_training``: the generic training loop on a toy MLP (no model / render code), and the
  two DDP checks the recipe's multi-process test runs in the same process group;
* ``recipe_configs``: short pre-training configs on the fabricated rooms.
"""
