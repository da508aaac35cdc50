"""``liftgs view SCENE [--checkpoint MODEL ...] [--labels DIR]``: browse a scene and ground
phrases in it in the browser; serves on 127.0.0.1:8080 until Ctrl-C."""

from __future__ import annotations

import importlib.util
import sys

from liftgs.config import name_positional, parse_cli


def main(argv: list[str] | None = None) -> int:
    from liftgs.viewer.app import ViewConfig, launch_viewer, load_inputs

    argv = name_positional(list(sys.argv[1:] if argv is None else argv), "--scene")
    config = parse_cli(ViewConfig, argv, prog="liftgs view", description=__doc__.split("\n\n")[0])
    if importlib.util.find_spec("viser") is None:
        print("liftgs view: needs the viser package: pip install 'liftgs[view]' (or pip install viser)",
              file=sys.stderr)
        return 2
    inputs = load_inputs(config)  # a bad input raises: `liftgs` prints it on one line
    viewer = launch_viewer(config, inputs)
    print(f"liftgs view: serving {inputs.name} at {viewer.url} (Ctrl-C stops)", flush=True)
    viewer.serve_forever()
    return 0
