"""The ``clearconv`` command: one module per subcommand, all clients of the public API.

Each module in :data:`COMMANDS` defines ``add_parser(subparsers)``, which makes
its parser with :func:`clearconv.cli._common.add_command` (``func`` set to its
``run(args) -> int``); :func:`build_parser` adds the common options to each.
Bad input ends with one line on stderr and a non-zero exit, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Subcommand modules, in the order ``clearconv --help`` lists them.
COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "summary",
    "datasets",
    "inspect",
    "xo",
    "serve",
    "export",
    "import_",  # registers the command "import" (a Python keyword as a module name)
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user error: its message is printed as one line, exit status 2."""


def common_options(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand has."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (default: the number of cores, at most 2 per process is best here)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearconv",
        description="Train, evaluate, inspect and run convolutional networks (NumPy only).",
    )
    from clearconv import __version__

    parser.add_argument("--version", action="version", version=f"clearconv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"clearconv.cli.{name}")
        module.add_parser(sub)
    from clearconv.cli._common import one_line_errors

    for p in sub.choices.values():
        common_options(p)  # after the command's own options: --help lists them last
    for p in (parser, *sub.choices.values()):
        one_line_errors(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or bool(os.environ.get("CLEARCONV_DEBUG"))
    try:
        from clearconv.backend import blas_threads

        with blas_threads(getattr(args, "threads", None)):
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`clearconv ... | head`): not an error
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("clearconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CLIError, ValueError, TypeError, OSError, KeyError, ImportError) as exc:
        if debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"clearconv {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # an internal error: still one line, with a way to see more
        if debug:
            raise
        print(
            f"clearconv {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
