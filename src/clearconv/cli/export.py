"""``clearconv export MODEL --format onnx OUT.onnx``: a model as an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command


def add_parser(subparsers) -> None:
    from clearconv.onnx import OPSET

    p = add_command(
        subparsers,
        "export",
        run,
        help="write a model as ONNX (runs in onnxruntime, PyTorch, ...)",
        description="Write MODEL as an ONNX file: standard operators, input 'input' with a "
        "dynamic batch, output 'logits', class names and normalisation in the metadata. "
        "MODEL is a model file (.npz), or a zoo name / architecture file for an "
        "untrained network.",
    )
    p.add_argument("model", metavar="MODEL", help="model file (.npz), zoo name or .toml/.json")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument(
        "--format", choices=("onnx",), default="onnx", help="output format (default onnx)"
    )
    p.add_argument(
        "--opset", type=int, default=OPSET, help=f"ONNX opset to write (default {OPSET})"
    )
    p.add_argument(
        "--input-shape",
        metavar="C,H,W",
        default=None,
        help="one sample's shape for a zoo name or architecture file (default: its own)",
    )


def _model(spec: str, input_shape, seed: int):
    """The Model to export: a trained file, or an untrained net from the zoo."""
    import numpy as np

    from clearconv.cli._common import load_model_file, resolve_model_spec
    from clearconv.model import Model

    if spec.lower().endswith(".npz"):
        return load_model_file(spec)
    from clearconv import zoo

    net, shape = zoo.build(
        resolve_model_spec(spec), input_shape=input_shape, rng=np.random.default_rng(seed)
    )
    k = net.output_shape((1, *shape))[-1]
    return Model(net, shape, [str(i) for i in range(k)])


def run(args: argparse.Namespace) -> int:
    from clearconv.cli._common import check_out_file, parse_shape
    from clearconv.onnx import export

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise CLIError(f"{args.out}: the output file should end in .onnx")
    check_out_file(out, None)
    model = _model(args.model, parse_shape(args.input_shape), args.seed)
    export(model, out, opset=args.opset)
    n = sum(p.size for p in model.parameters())
    print(
        f"wrote {out} (ONNX opset {args.opset}, input (N, {', '.join(map(str, model.input_shape))})"
        f", {len(model.class_names)} classes, {n:,} parameters)"
    )
    return 0
