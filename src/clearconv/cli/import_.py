"""``clearconv import IN.onnx OUT.npz``: an ONNX CNN as a clearconv model file.

The module is ``import_`` because ``import`` is a Python keyword; the command
it registers is ``import``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "import",
        run,
        help="read an ONNX model (e.g. from torch.onnx.export) into a .npz model file",
        description="Convert an ONNX CNN (Conv, BatchNormalization, pooling, activations, "
        "Flatten/Reshape, Gemm/MatMul, residual Add) into a clearconv model file that "
        "evaluate, predict, inspect and train --resume can use. Unsupported nodes are "
        "listed, never approximated.",
    )
    p.add_argument("src", metavar="IN.onnx", help="the ONNX file to read")
    p.add_argument("out", metavar="OUT.npz", help="the model file to write")


def run(args: argparse.Namespace) -> int:
    from clearconv import io
    from clearconv.cli._common import check_out_file
    from clearconv.onnx import load

    src = Path(args.src)
    if not src.is_file():
        raise CLIError(f"{args.src}: ONNX file not found")
    check_out_file(args.out, None)
    model = load(src)
    out = io.save(model, args.out)
    n = sum(p.size for p in model.parameters())
    print(
        f"imported {src}: {len(model.net)} layers, {n:,} parameters, input "
        f"(N, {', '.join(map(str, model.input_shape))}), {len(model.class_names)} classes "
        f"-> {out}"
    )
    return 0
