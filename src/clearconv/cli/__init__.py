"""The ``clearconv`` command: one module per subcommand, all clients of the public API.

Each module in :data:`COMMANDS` defines ``add_parser(subparsers)``, which makes
its parser with :func:`clearconv.cli._common.add_command` (``func`` set to its
``run(args) -> int``); :func:`build_parser` adds the common options to each.
Bad input ends with one line on stderr and a non-zero exit, never a traceback
(``--debug``, before or after the subcommand, shows it).
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
    "recipe",
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


#: Commands whose results depend on ``--seed``, and what it seeds there. The
#: others (summary, recipe, datasets, inspect, predict, serve, import) are
#: deterministic, so they do not offer it.
SEED_HELP = {
    "train": "random seed: initial weights, shuffling, augmentation, held-out split (default 0)",
    "evaluate": "seed of the held-out split of a folder without FOLDER/test, as given to "
    "train (default 0)",
    "xo": "seed of the generated images and the initial weights (default 0)",
    "export": "seed of the random weights when MODEL is a zoo name or architecture file "
    "(default 0)",
}


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (the message says what came).

    >>> positive_int("2")
    2
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


#: Subcommands that compute nothing (downloads, listings): no ``--threads``.
NO_COMPUTE = frozenset({"datasets"})


def common_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Options every subcommand has (``--seed`` only where something is random,
    ``--threads`` only where something is computed)."""
    if command in SEED_HELP:
        parser.add_argument("--seed", type=int, default=0, help=SEED_HELP[command])
    if command not in NO_COMPUTE:
        _threads_option(parser)
    # SUPPRESS: when absent here, the main parser's value (``clearconv --debug CMD``) stays.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors (also: CLEARCONV_DEBUG=1)",
    )


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="BLAS threads for matrix products (default: the library's own choice, usually "
        "one per core; fewer can be faster when other programs share the cores)",
    )


#: Options whose unset value comes from the model's training recipe (``zoo.recipe``).
RECIPE_OPTIONS = frozenset(
    ("epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "label_smoothing")
)


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` with each option's default (when its help does not say it already),
    and text blocks that contain line breaks (tables in epilogs) kept as written.

    An option left unset to take the recipe's value (default None, a recipe
    key) says so; ``train --help`` lists the recipes after its options.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None and action.dest in RECIPE_OPTIONS and "default" not in text:
            return f"{text} (default: the model's recipe, listed below)"
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return text
        return f"{text} (default {default})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearconv",
        description="Train, evaluate, inspect and run convolutional networks (NumPy only).",
        formatter_class=HelpFormatter,
    )
    from clearconv import __version__

    parser.add_argument("--version", action="version", version=f"clearconv {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback on errors (before or after the command)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"clearconv.cli.{name}")
        module.add_parser(sub)
    from clearconv.cli._common import one_line_errors
    from clearconv.cli.recipe import recipes_table

    # train's unset options come from these recipes: list them under its options
    sub.choices["train"].epilog = recipes_table()
    for name, p in sub.choices.items():
        p.formatter_class = HelpFormatter
        common_options(p, name)  # after the command's own options: --help lists them last
    for p in (parser, *sub.choices.values()):
        one_line_errors(p)
    return parser


def user_message(exc: BaseException) -> str:
    """One line for a user error: an OSError as "PATH: what went wrong" (no ``[Errno N]``).

    >>> user_message(FileNotFoundError(2, "No such file or directory", "/nope/r.html"))
    '/nope/r.html: no such file or directory'
    >>> user_message(KeyError("no layer 'x'"))
    "no layer 'x'"
    """
    if isinstance(exc, OSError) and exc.strerror:
        what = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{exc.filename}: {what}" if exc.filename else what
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


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
        print(f"clearconv {args.command}: error: {user_message(exc)}", file=sys.stderr)
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
