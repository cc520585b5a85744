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
import warnings
from typing import Sequence

from stbin import __version__
from stbin.cli._text import plain_parser

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


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line (``stbin CMD: error: ...``, exit 2) like every other user error;
    ``stbin CMD --help`` shows the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    parser = OneLineParser(
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
    return plain_parser(parser)  # help texts come from docstrings: plain text in the terminal


def _is_main_process() -> bool:
    """False on the ranks > 0 of a torchrun launch: they report nothing, rank 0 reports once."""
    from stbin.training.distributed import env_rank

    return env_rank() == 0


def _one_line_warnings(command: str) -> None:
    """Warnings (e.g. an unverified old checkpoint) as one line ``stbin CMD: warning: ...``."""
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if _is_main_process():
            print(f"stbin {command}: warning: {str(message).strip().splitlines()[0]}", file=file or sys.stderr)
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the sub-command's name, like its other errors
        cmd = f"stbin {args.command}" if getattr(args, "command", None) else "stbin"
        parser.exit(2, f"{cmd}: error: unrecognized arguments: {' '.join(extra)} (see {cmd} --help)\n")
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    if os.environ.get("STBIN_DEBUG"):
        return int(args._run(args) or 0)
    _one_line_warnings(args.command)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("stbin: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError) as e:  # a missing extra: stbin._extras.MissingExtraError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and getattr(e, "filename", None) and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        if not _is_main_process():  # under torchrun: printed once (rank 0), every rank exits with 2
            _other_rank_user_error(f"stbin {args.command}: error: {msg}")
        print(f"stbin {args.command}: error: {msg}", file=sys.stderr)
        return 2


RANK_WAIT_S = 20.0


def _other_rank_user_error(line: str) -> None:
    """A rank > 0 of a torchrun launch hit a user error: leave the report to rank 0 and exit with 2.

    Every rank checks the same inputs, so rank 0 reports the same error; torchrun then stops
    the other ranks with SIGTERM, which this rank answers with exit code 2. If rank 0 did not
    fail (an error of this rank only), the line is printed after ``RANK_WAIT_S`` seconds."""
    import signal
    import time

    from stbin.training.distributed import env_rank

    signal.signal(signal.SIGTERM, lambda *a: os._exit(2))
    time.sleep(RANK_WAIT_S)
    print(line.replace(": error:", f": error (rank {env_rank()}):", 1), file=sys.stderr)
    sys.stderr.flush()
    os._exit(2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
