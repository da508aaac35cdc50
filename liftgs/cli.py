"""The ``liftgs`` command.

Each subcommand lives next to the code it drives and is imported only when it runs, so
``liftgs --help`` is instant. A subcommand module exposes ``main(argv: list[str]) -> int | None``
and builds its own typed-dataclass CLI with tyro.

The command owns its process, so it makes the process-wide runtime set-up
(``liftgs.runtime.configure_runtime``: threads, numba's threading layer, scipy's BLAS) before
dispatching; ``torchrun -m liftgs.cli`` goes through the same ``main``. Subcommands with their
own ``--threads`` make it themselves once their options are parsed.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module:function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("liftgs.synth.cli:main", "generate synthetic rooms (RGB-D frames, point clouds, language)"),
    "convert": ("liftgs.io.cli:convert_main", "convert a ScanNet scan or an RGB-D folder into a scene directory"),
    "inspect": ("liftgs.io.cli:inspect_main", "summarise scene directories (points, frames, objects, expressions)"),
    "pseudolabel": ("liftgs.teachers.cli:main", "compute and cache 2D pseudo-labels for every frame of a set of scenes"),
    "pretrain": ("liftgs.recipes.pretrain:main", "pre-train with 2D render supervision from pseudo-labels (no 3D labels)"),
    "finetune": ("liftgs.recipes.finetune:main", "fine-tune with 3D labels (referring expressions, category queries)"),
    "eval": ("liftgs.eval.cli:main", "evaluate a checkpoint: instance-segmentation AP and grounding accuracy"),
    "ground": ("liftgs.ground:main", "ground a phrase in a scene or a bare point cloud and write masks, boxes, renders"),
    "demo": ("liftgs.demo:main", "the end-to-end demo on the synthetic benchmark (writes report.md)"),
}

# subcommands that call configure_runtime themselves with their --threads
CONFIGURES_ITSELF = frozenset({"demo", "pseudolabel"})


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: liftgs <command> [options]", "", "3D vision-language grounding with LIFT-GS.", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `liftgs <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from liftgs import __version__

        print(f"liftgs {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"liftgs: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = SUBCOMMANDS[name]
    if name not in CONFIGURES_ITSELF and not {"-h", "--help"} & set(rest):
        from liftgs.runtime import configure_runtime

        configure_runtime()
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
