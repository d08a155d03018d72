"""``clearconv inspect MODEL --image IMG --out report.html``: one input walked through the net."""

from __future__ import annotations

import argparse
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command, check_out_file, write_text_file


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "inspect",
        run,
        help="an HTML report of one image walked through a model, layer by layer",
        description="Write one self-contained HTML file: the image at every layer (feature "
        "maps, pooled maps, the flattened vector), class scores and probabilities, saliency "
        "and Grad-CAM, the filters and the model summary.",
    )
    p.add_argument("model", help="model file (.npz written by clearconv train / clearconv.save)")
    p.add_argument("--image", required=True, help="image file (PNG, JPEG, ...)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument(
        "--scale",
        choices=("shared", "per_map"),
        default="shared",
        help="colour scale of feature maps: one per layer (default) or one per map",
    )


def run(args: argparse.Namespace) -> int:
    from clearconv import io
    from clearconv.viz.inputs import decode_image, prepare
    from clearconv.viz.report import inspect_report

    model_path, image_path = Path(args.model), Path(args.image)
    if not model_path.is_file():
        raise CLIError(f"{model_path}: model file not found")
    if not image_path.is_file():
        raise CLIError(f"{image_path}: image file not found")
    out = check_out_file(args.out)
    model = io.load(model_path)
    try:
        picture = decode_image(image_path.read_bytes())
        raw = prepare(model, picture)
    except ValueError as exc:
        raise CLIError(f"{image_path}: {exc}") from exc
    if model.per_pixel:  # a class per pixel: prediction, overlay, encoder and decoder maps
        from clearconv.viz.segment import segment_report

        html = segment_report(model, raw, f"{model_path.name} on {image_path.name}", args.scale)
        write_text_file(out, html)
        print(f"{image_path.name}: segmented; wrote {out}")
        return 0
    html = inspect_report(
        model,
        raw,
        title=f"{model_path.name} on {image_path.name}",
        scale=args.scale,
        original=picture,
    )
    write_text_file(out, html)
    probs = model.predict_proba(raw)[0]
    top = int(probs.argmax())
    print(f"{image_path.name}: {model.class_names[top]} ({probs[top]:.3f}); wrote {out}")
    return 0
