"""``clearconv xo``: the tutorials' X/O example, computed exactly, then learned."""

from __future__ import annotations

import argparse

from clearconv.cli import CLIError
from clearconv.cli._common import add_command, check_out_file, write_text_file


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "xo",
        run,
        help="the X/O walkthrough of the tutorials as an HTML report",
        description="Reproduce the tutorials' X/O example (features, filtering, ReLU, pooling, "
        "votes) with clearconv's layers, then train the same network on generated X/O images "
        "and show the learned features beside the hand-made ones.",
    )
    p.add_argument("--out", default="xo.html", help="HTML file to write (default xo.html)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (0: no training)")
    p.add_argument("--samples", type=int, default=400, help="generated training images")


def run(args: argparse.Namespace) -> int:
    from clearconv.viz.report import xo_report
    from clearconv.viz.xo import train_xo, walkthrough

    if args.epochs < 0 or args.samples < 2:
        raise CLIError("--epochs must be >= 0 and --samples >= 2")
    out = check_out_file(args.out)
    walk = walkthrough()
    trained = history = None
    if args.epochs > 0:
        trained, history = train_xo(epochs=args.epochs, n=args.samples, seed=args.seed)
    write_text_file(out, xo_report(walk, trained, history))
    names = walk["class_names"]
    for k, row in enumerate(walk["probabilities"]):
        probs = ", ".join(f"P({n})={v:.3f}" for n, v in zip(names, row))
        print(f"canonical {names[k]}: {probs}")
    if history:
        print(f"trained {args.epochs} epochs: held-out accuracy {history['accuracy'][-1]:.3f}")
    print(f"wrote {out}")
    return 0
