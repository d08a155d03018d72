"""``clearconv summary lenet5|m.npz|net.toml``: layers, output shapes, parameters, cost."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command, parse_shape, print_json, resolve_model_spec


def add_parser(subparsers) -> None:
    from clearconv import zoo

    p = add_command(
        subparsers,
        "summary",
        run,
        help="show a model's layers, shapes, parameters and multiply-adds",
        description="Table of a model's layers: output shape, parameters, multiply-adds "
        "and receptive field. MODEL is a zoo name, a model file (.npz) or an architecture "
        "file (.toml/.json). Shapes leave the batch size open: N in the table, null in "
        "--json (output_shape [null, C, H, W]). Training defaults: clearconv recipe MODEL.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"zoo name ({', '.join(zoo.NAMES)}), model file (.npz) or architecture file",
    )
    p.add_argument(
        "--input-shape",
        metavar="C,H,W",
        default=None,
        help="one sample's shape (default: the model's own)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object; the batch dimension of each output_shape is null",
    )


def _net_and_shape(spec: str, input_shape):
    """The network to describe and its input shape (``None``: the model's own)."""
    from clearconv import io, zoo

    if spec.lower().endswith(".npz"):
        if not Path(spec).is_file():
            raise CLIError(f"{spec}: model file not found")
        model = io.load(spec)
        return model, input_shape or model.input_shape
    spec = resolve_model_spec(spec)
    net, shape = zoo.build(spec, input_shape=input_shape, init=False)
    return net, shape


def _row_json(row) -> dict:
    """A table row as JSON: the batch dimension as null, as the table's N (any size)."""
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(row).items()}
    out["output_shape"] = [None, *row.output_shape[1:]]
    return out


def run(args: argparse.Namespace) -> int:
    from clearconv.summary import summary

    shape = parse_shape(args.input_shape)
    net, shape = _net_and_shape(args.model, shape)
    table = summary(net, tuple(shape))
    if args.json:
        print_json(
            {
                "model": args.model,
                "input_shape": list(shape),
                "total_params": table.total_params,
                "total_macs": table.total_macs,
                "rows": [_row_json(r) for r in table.rows],
            }
        )
    else:
        print(f"{args.model}")
        print(table)
    return 0
