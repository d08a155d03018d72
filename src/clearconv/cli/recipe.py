"""``clearconv recipe [MODEL]``: the settings ``train`` uses for options not given."""

from __future__ import annotations

import argparse

from clearconv.cli._common import add_command, format_table, print_json

#: The recipe's keys, in the order the table shows them, with their ``train`` options.
OPTIONS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "schedule": "--schedule",
    "weight_decay": "--weight-decay",
    "label_smoothing": "--label-smoothing",
    "augment": "--augment",
}


def add_parser(subparsers) -> None:
    from clearconv import zoo

    p = add_command(
        subparsers,
        "recipe",
        run,
        help="show the default training settings of each zoo model",
        description="The settings `clearconv train --model MODEL` uses for every option "
        "not given on the command line (epochs, batch size, optimizer, learning rate, "
        "schedule, weight decay, label smoothing, augmentation). Without MODEL: all zoo "
        "models. Architecture files (.toml/.json) get the general defaults.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help=f"zoo name ({', '.join(zoo.NAMES)}) or .toml/.json architecture file",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _cell(key: str, value) -> str:
    if key == "augment":
        return "off" if not value else ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def recipes_table() -> str:
    """Every zoo model's epochs, batch size, optimizer, lr and schedule, one line each."""
    from clearconv import zoo

    keys = ("epochs", "batch_size", "optimizer", "lr", "schedule")
    rows = [[name, *(_cell(k, zoo.recipe(name)[k]) for k in keys)] for name in zoo.NAMES]
    rows.append(["other", *(_cell(k, zoo.recipe(None)[k]) for k in keys)])
    head = ["model", "epochs", "batch", "optimizer", "lr", "schedule"]
    return "defaults per model (clearconv recipe MODEL shows all settings):\n" + format_table(
        head, rows
    )


def run(args: argparse.Namespace) -> int:
    from clearconv import zoo
    from clearconv.cli._common import resolve_model_spec

    if args.model is None:
        if args.json:
            print_json({name: zoo.recipe(name) for name in zoo.NAMES})
        else:
            print(recipes_table())
        return 0
    spec = resolve_model_spec(args.model)
    settings = zoo.recipe(spec if spec in zoo.NAMES else None)
    if args.json:
        print_json({"model": args.model, **settings})
        return 0
    print(f"clearconv train --model {args.model} uses, unless given:")
    print(
        format_table(["option", "value"], [[o, _cell(k, settings[k])] for k, o in OPTIONS.items()])
    )
    return 0
