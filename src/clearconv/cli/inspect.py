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
    p.add_argument(
        "--image", help="image file (PNG, JPEG, ...); for a sound model a .wav recording"
    )
    p.add_argument("--text", help="for a text model: the sentence to explain")
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

    if (args.image is None) == (args.text is None):
        raise CLIError("give --image FILE (an image or a .wav recording) or --text SENTENCE")
    model_path = Path(args.model)
    if not model_path.is_file():
        raise CLIError(f"{model_path}: model file not found")
    if args.text is not None or Path(args.image).suffix.lower() == ".wav":
        return _sound_or_text(args, io.load(model_path))
    image_path = Path(args.image)
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


def _sound_or_text(args: argparse.Namespace, model) -> int:
    """``inspect`` for a recording (waveform, spectrogram, maps along time) or a sentence
    (saliency per word, the strongest filters' windows)."""
    from clearconv.cli import soundtext as st
    from clearconv.data import DataError
    from clearconv.data.audio import read_wav
    from clearconv.data.text import tokenize
    from clearconv.viz.soundtext import sound_report, text_report

    out = check_out_file(args.out)
    name = Path(args.model).name
    if args.text is not None:
        x = st.text_inputs(model, [args.text])
        html = text_report(model, x, tokenize(args.text), f"{name} on {args.text!r}")
        what = repr(args.text)
    else:
        feats = st.model_features(model)
        if feats is None:
            raise CLIError(f"{args.image} is a recording, but {name} does not read sound")
        try:
            samples, _ = read_wav(args.image)
            x = feats.from_file(args.image)
        except (DataError, OSError) as exc:
            raise CLIError(str(exc)) from exc
        html = sound_report(model, x, samples, f"{name} on {Path(args.image).name}")
        what = Path(args.image).name
    write_text_file(out, html)
    probs = model.predict_proba(x)[0]
    top = int(probs.argmax())
    print(f"{what}: {model.class_names[top]} ({probs[top]:.3f}); wrote {out}")
    return 0
