"""Entry point of the ``stbin`` command.

Each sub-command is a module of :mod:`stbin.cli` with two functions:

* ``add_parser(subparsers) -> argparse.ArgumentParser`` — declares its options and help;
* ``run(args) -> int`` — does the work (heavy imports go inside ``run``).

User errors (bad names, bad values, missing files, unwritable folders) are reported as one
line on stderr with exit code 2; set ``STBIN_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from stbin import __version__

# Sub-command name -> module. Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "train": "stbin.cli.train",
    "summary": "stbin.cli.summary",
    "export": "stbin.cli.export",
    "bench-inference": "stbin.cli.bench_inference",
    "estimator-lab": "stbin.cli.estimator_lab",
    "gradient-quality": "stbin.cli.gradient_quality",
    "theory": "stbin.cli.theory",
    "reproduce": "stbin.cli.reproduce",
}


class UsageError(Exception):
    """An error caused by the user's input; reported in one line with exit code 2."""


def _available_commands() -> dict[str, object]:
    mods = {}
    for name, path in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(path)
        except ModuleNotFoundError as e:  # a sub-command whose module is not part of this build
            if e.name != path:
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stbin",
        description=(
            "Binary and few-bit neural networks with principled straight-through estimators.\n"
            "Run 'stbin COMMAND --help' for the options of one command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stbin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available_commands().items():
        p = mod.add_parser(sub)  # type: ignore[attr-defined]
        p.set_defaults(_run=mod.run)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    if os.environ.get("STBIN_DEBUG"):
        return int(args._run(args) or 0)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("stbin: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and getattr(e, "filename", None) and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        print(f"stbin {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
