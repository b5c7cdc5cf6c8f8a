"""The ``acn`` command line: thin subcommands over the Python API.

One module per command group builds its subcommands' arguments (``add_arguments`` or
``add_<command>_arguments``) and runs them (``run`` or ``run_<command>``); this module builds
the parser from them and maps errors to exit codes. Only the entry points import it
(``acn``, ``python -m acn``, ``python -m acn.cli``): nothing in the library does.

Errors a user can cause (:class:`acn.errors.AcnError`, and ``OSError`` such as a full disk)
print one line, ``acn: error: ...``, and exit with status 2; ``--debug`` shows the traceback
instead. Ctrl-C exits with 130. docs/errors.md lists every case.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import warnings

from acn import __version__
from acn.errors import AcnError

# name -> (module with add_arguments/run, one-line help). Modules are imported lazily so that
# `acn --help` stays fast and optional dependencies (PyAV, OpenCV) load only when needed.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("acn.cli.experiment", "synthesise data, train, localize, evaluate and plot, end to end"),
    "synth": ("acn.cli.synth", "write a synthetic two-stream dataset"),
    "train": ("acn.cli.train", "train the base model and the regression networks"),
    "localize": ("acn.cli.localize", "localize actions: a dataset subset or one video file"),
    "evaluate": ("acn.cli.evaluate", "mAP of a results JSON against ground truth"),
    "ablate": ("acn.cli.experiment", "the paper's ablation tables (alpha, scoring, streams, baselines)"),
    "refine": ("acn.cli.refine", "refine another model's CAS into detections (regression nets, "
               "-L scoring)"),
    "baseline": ("acn.cli.localize", "CAS-thresholding baseline detections from a trained run"),
    "extract": ("acn.cli.extract", "I3D RGB + flow features from video files"),
    "convert": ("acn.cli.convert", "copy a dataset into the canonical (pickle-free) layout"),
    "batch": ("acn.cli.batch", "corpus-scale extract/localize over a manifest (Ray or local)"),
    "plot": ("acn.cli.localize", "timeline plots of detections, SCP and attention"),
    "report": ("acn.cli.report", "one self-contained HTML page: run, mAP, error diagnosis, "
               "timelines"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acn", description="Action Coherence Network: weakly-supervised temporal action "
        "localization from two-stream snippet features.")
    parser.add_argument("--version", action="version", version=f"acn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        mod = importlib.import_module(module)
        adder = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
        adder(p)
        p.set_defaults(_module=module, _command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C anywhere, even while the parser imports the commands
        print("acn: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _interrupt_after():
    """Hold a Ctrl-C back until the block ends, then raise it. Needed around loading torch:
    a KeyboardInterrupt raised inside its C++ start-up code aborts Python (SIGABRT, 'terminate
    called after throwing pybind11::error_already_set') instead of exiting cleanly."""
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda *a: got.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


def _main(argv: list[str] | None) -> int:
    with _interrupt_after():
        import torch  # noqa: F401 - loaded here, safe from Ctrl-C (nearly every command uses it)

        parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    if not debug:
        # Library warnings (e.g. clipped segments) are shown once, without source lines.
        warnings.showwarning = lambda msg, cat, *a, **k: print(f"acn: warning: {msg}", file=sys.stderr)
    mod = importlib.import_module(args._module)
    runner = getattr(mod, f"run_{args._command}", None) or mod.run
    try:
        return int(runner(args) or 0)
    except AcnError as e:
        if debug:
            raise
        print(f"acn: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system said no (disk full, permission denied, ...): one line too
        if debug:
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"acn: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
