"""The ``liftgs`` command.

Each subcommand lives next to the code it drives and is imported only when it runs, so
``liftgs --help`` is instant. A subcommand module exposes ``main(argv: list[str]) -> int | None``
and builds its own typed-dataclass CLI with tyro.

The command owns its process, so it makes the process-wide runtime set-up
(``liftgs.runtime.configure_runtime``: threads, numba's threading layer, scipy's BLAS) before
dispatching; ``torchrun -m liftgs.cli`` goes through the same ``main``. Subcommands with their
own ``--threads`` make it themselves once their options are parsed.

Errors are handled here, once, the same way for every command. A user's mistake -- a missing
folder, a bad scene file, a value a config refuses, an unusable checkpoint (``DataError``,
``ConfigError``, ``CheckpointError``, other ``ValueError`` / ``OSError``) -- prints one line,
``liftgs <command>: <message>`` (the message names the file and the field), and exits with
status 2; so does an option value refused while parsing. ``liftgs --debug <command> ...``
(``--debug`` may stand anywhere) shows the traceback instead. Anything else is a bug and keeps
its traceback, as does Ctrl-C. Data the command can use but partly leaves out (a scene without
labels, ...) is reported as ``liftgs <command>: warning: <message>``
(:class:`~liftgs.io.errors.DataWarning`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings

# name -> (module:function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("liftgs.synth.cli:main", "generate synthetic rooms (RGB-D frames, point clouds, language)"),
    "synth-qa": ("liftgs.vqa.cli:main", "generate questions and answers about synthetic rooms (ScanQA format)"),
    "convert": ("liftgs.io.cli:convert_main", "convert a ScanNet scan or an RGB-D folder into a scene directory"),
    "inspect": ("liftgs.io.cli:inspect_main", "summarise scene directories (points, frames, objects, expressions)"),
    "recon": ("liftgs.recon.cli:main", "reconstruct 3D Gaussians per scene from posed RGB(-D) frames (3DGS on the CPU)"),
    "pseudolabel": ("liftgs.teachers.cli:main", "compute and cache 2D pseudo-labels for every frame of a set of scenes"),
    "pretrain": ("liftgs.recipes.pretrain:main", "pre-train with 2D render supervision from pseudo-labels (no 3D labels)"),
    "finetune": ("liftgs.recipes.finetune:main", "fine-tune with 3D labels (referring expressions, category queries)"),
    "gensplat-semantic": ("liftgs.recipes.gensplat:semantic_main",
                          "GenSplat stage I: train the Gaussian encoder on 2D language features (L1)"),
    "gensplat-instance": ("liftgs.recipes.gensplat:instance_main",
                          "GenSplat stage II: train encoder + instance decoder on 2D instance masks"),
    "gensplat-frames": ("liftgs.recipes.gensplat_frames:main",
                        "GenSplat GAFS: train the frame selector's relevance scorer (BCE on target visibility)"),
    "gensplat-language": ("liftgs.recipes.gensplat_language:main",
                          "GenSplat stage III: train the reasoner + referring decoder (L_align = L_text + 0.1 L_mask)"),
    "eval": ("liftgs.eval.cli:main", "evaluate a checkpoint: instance-segmentation AP and grounding accuracy"),
    "gensplat-eval": ("liftgs.eval.gensplat:main",
                      "evaluate a GenSplat model on reconstructed scenes: instance AP and semantic mIoU"),
    "gensplat-eval-language": ("liftgs.eval.gensplat_language:main",
                               "evaluate GenSplat stage III: referring segmentation, frame selection, VQA"),
    "answer": ("liftgs.vqa.answer:main", "answer a question about a scene with a GenSplat stage-III model"),
    "ground": ("liftgs.ground:main", "ground a phrase in a scene or a bare point cloud and write masks, boxes, renders"),
    "push": ("liftgs.push:main", "upload a LIFT-GS model with a generated model card to a Hugging Face repo"),
    "view": ("liftgs.viewer.cli:main", "browse a scene in the browser: points, cameras, pseudo-labels, grounded phrases"),
    "demo": ("liftgs.demo:main", "the end-to-end demo on the synthetic benchmark (writes report.md)"),
}

# subcommands that call configure_runtime themselves with their --threads
CONFIGURES_ITSELF = frozenset({"demo", "pseudolabel", "recon"})


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: liftgs [--debug] <command> [options]", "", "3D vision-language grounding with LIFT-GS.", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `liftgs <command> --help` for a command's options. A mistake in the input prints one",
              "line and exits with status 2; --debug shows the traceback instead."]
    return "\n".join(lines)


class OptionError(ValueError):
    """A command-line value that parsing or a config's ``__post_init__`` refused."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "bad input", not "bug": one line, exit status 2."""
    from liftgs.config import ConfigError
    from liftgs.io.errors import DataError
    from liftgs.train.checkpoint import CheckpointError

    return (DataError, ConfigError, CheckpointError, OptionError, ValueError, OSError)


def _refuse_bad_options():
    """Turn tyro's boxed report of a refused option value into an :class:`OptionError`.

    Missing or unknown flags keep tyro's usage box (it lists what the command takes); a value
    that does not convert or that a config's ``__post_init__`` rejects becomes one line like
    every other user error. Uses tyro's parse-error hook where this tyro version has one.
    """
    try:
        from tyro import _errors as tyro_errors
    except ImportError:  # pragma: no cover - older tyro: its own report stands
        return contextlib.nullcontext()
    on_error = getattr(tyro_errors, "on_parse_error", None)
    failure = getattr(tyro_errors, "InstantiationFailure", None)
    choice = getattr(tyro_errors, "InvalidChoice", None)
    if on_error is None or failure is None:  # pragma: no cover
        return contextlib.nullcontext()

    def flag(event) -> str:
        names = getattr(getattr(getattr(event, "argument", None), "lowered", None), "name_or_flags", None)
        return "/".join(names) if names else ""

    def hook(event) -> None:
        if isinstance(event, failure):
            name = flag(event)
            message = str(event.message)
            raise OptionError(f"{name}: {message}" if name and not message.startswith(name) else message)
        if choice is not None and isinstance(event, choice):
            raise OptionError(f"{flag(event) or 'value'}: {event.value!r} is not one of "
                              f"{', '.join(map(str, event.choices))}")

    return on_error(hook)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


@contextlib.contextmanager
def _data_warnings_on_one_line(name: str):
    """Show :class:`DataWarning` as ``liftgs <name>: warning: ...``; other warnings as usual."""
    from liftgs.io.errors import DataWarning

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DataWarning):
                print(f"liftgs {name}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_command(name: str, argv: list[str], debug: bool = False) -> int:
    """Run subcommand ``name`` with ``argv``; a user error prints one line and gives 2."""
    target, _ = SUBCOMMANDS[name]
    try:
        with _data_warnings_on_one_line(name), _refuse_bad_options():
            if name not in CONFIGURES_ITSELF and not {"-h", "--help"} & set(argv):
                from liftgs.runtime import configure_runtime

                configure_runtime()
            module_name, func_name = target.split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            return int(func(argv) or 0)
    except user_errors() as err:
        if debug:
            raise
        print(f"liftgs {name}: {_one_line(err)}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
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
    return run_command(name, rest, debug)


if __name__ == "__main__":
    sys.exit(main())
