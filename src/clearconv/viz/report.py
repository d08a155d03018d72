"""Self-contained HTML reports: a model inspected layer by layer, and the X/O walkthrough.

Each report is one file: the pictures are inlined as base64 PNG, the style is
inline, there are no scripts and no external links, so the file can be mailed
or opened offline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv.model import Model
from clearconv.viz._image import colorize
from clearconv.viz.featuremaps import feature_maps, trace
from clearconv.viz.filters import conv_layers, filter_image
from clearconv.viz.html import bars, esc, img, number_grid, page, table
from clearconv.viz.saliency import grad_cam, saliency, saliency_map

__all__ = ["inspect_report", "xo_report"]

MAX_MAPS = 32  # feature maps drawn per layer (the rest are summarised)

_EXPLAIN = {
    "Conv2d": "A convolution slides each of its small filters over the input and, at every "
    "position, adds up the products of filter weights and pixels. Each filter gives one "
    "feature map: bright where the input looks like the filter.",
    "Conv1d": "A 1-D convolution slides each filter along the signal; each filter gives one map.",
    "ReLU": "ReLU keeps positive values and turns every negative value into 0: a feature is "
    "either present (and how strongly) or not.",
    "LeakyReLU": "Leaky ReLU keeps positive values and shrinks negative ones.",
    "Tanh": "Tanh squashes every value into (-1, 1).",
    "Sigmoid": "Sigmoid squashes every value into (0, 1).",
    "MaxPool2d": "Max pooling keeps the largest value of each small window: the map shrinks, "
    "but a feature that was found anywhere in the window is still there.",
    "AvgPool2d": "Average pooling replaces each small window by its mean: the map shrinks.",
    "AdaptiveAvgPool2d": "Global average pooling turns each map into one number, its mean.",
    "BatchNorm2d": "Batch normalisation rescales each channel with statistics learned in training.",
    "BatchNorm1d": "Batch normalisation rescales each value with statistics learned in training.",
    "Flatten": "Flatten lays all the maps out in one long list of numbers, ready for the "
    "fully connected layers (the strip shows it: one pixel per number).",
    "Linear": "A fully connected layer: every output is a weighted sum of all inputs (a vote "
    "of every feature), plus a bias.",
    "Dropout": "Dropout switches off random units while training; when predicting it does nothing.",
    "Residual": "A residual block adds its input back to what its layers computed.",
    "Sequential": "A block of several layers applied one after the other.",
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _maps_html(out: np.ndarray, scale: str) -> str:
    """One sample's output: maps as small images, or a vector as a colour strip."""
    a = out[0]
    if a.ndim in (2, 3):
        maps = feature_maps(a, scale)  # (C, H, W) in [0, 1]
        figs = [
            img(colorize(m, "viridis", 0.0, 1.0), f"#{i}") for i, m in enumerate(maps[:MAX_MAPS])
        ]
        more = len(maps) - MAX_MAPS
        note = f"<p>... and {more} more maps.</p>" if more > 0 else ""
        return f'<div class="maps">{"".join(figs)}</div>{note}'
    vec = np.asarray(a, dtype=np.float32).reshape(-1)
    cols = min(len(vec), 64)
    tiles = np.pad(vec, (0, -len(vec) % cols)).reshape(-1, cols)
    strip = img(colorize(tiles, "diverging"), f"{len(vec)} values (blue < 0 < red)", scale=8)
    return f'<div class="maps">{strip}</div>'


def _summary_html(model: Model) -> str:
    try:
        from clearconv import summary

        s = summary(model)
        return f"<pre>{esc(str(s))}</pre>"
    except Exception as exc:  # the summary is a courtesy; the walk below is the report
        rows = [(n, repr(m)) for n, m in getattr(model, "net", model).named_modules() if n]
        return f"<p>(summary unavailable: {esc(exc)})</p>" + table(("layer", "module"), rows)


def inspect_report(
    model: Model, raw: np.ndarray, title: str = "clearconv inspect", scale: str = "shared"
) -> str:
    """The HTML report of one input walked through ``model`` (a :class:`clearconv.Model`).

    Parameters
    ----------
    model : clearconv.Model
    raw : numpy.ndarray
        One raw image as the model takes it, ``(1, *input_shape)`` (see
        :func:`clearconv.viz.inputs.prepare`).
    title : str
    scale : {"shared", "per_map"}
        Colour scale of the feature maps.

    Returns
    -------
    str
        A complete HTML document.
    """
    x = model.preprocess(raw)
    outs = trace(model, x)
    logits = outs[-1].output[0]
    probs = _softmax(logits.astype(np.float64))
    names = list(model.class_names)
    top = int(np.argmax(probs))
    parts = [
        f"<h1>{esc(title)}</h1>",
        '<p class="explain">A convolutional network reads a picture in stages. Each stage '
        "turns the numbers it receives into new numbers: first small patterns (edges, "
        "strokes), then combinations of them, and at the end one score per class. This page "
        "follows one picture through every stage of this network.</p>",
        f"<p><b>Prediction: {esc(names[top])}</b> with probability {probs[top]:.3f}.</p>",
        "<h2>The input</h2>",
        '<p class="explain">The picture as the network sees it: resized to '
        f"{esc('x'.join(map(str, model.input_shape[1:])))} pixels and normalised.</p>",
        '<div class="maps">',
        img(_as_picture(raw[0]), "raw input"),
        img(_as_picture(x[0]), "after preprocessing"),
        "</div>",
    ]
    for i, o in enumerate(outs):
        shape = "x".join(map(str, o.output.shape[1:]))
        parts.append(f"<h2>Stage {i + 1}: {esc(o.kind)} <small>({esc(o.name)})</small></h2>")
        parts.append(
            f"<p><code>{esc(repr(o.layer).splitlines()[0])}</code> → output {esc(shape)}</p>"
        )
        parts.append(f'<p class="explain">{esc(_EXPLAIN.get(o.kind, ""))}</p>')
        if i < len(outs) - 1:
            parts.append(_maps_html(o.output, scale))
    parts += [
        "<h2>Class scores and probabilities</h2>",
        '<p class="explain">The last layer gives one score (logit) per class. Softmax turns the '
        "scores into probabilities: exp(score) divided by the sum of exp(score) over all "
        "classes, so they are positive and add up to 1.</p>",
        table(
            ("class", "score", "probability"),
            [(n, f"{s:.3f}", f"{p:.4f}") for n, s, p in zip(names, logits, probs)],
        ),
        bars(probs, names),
    ]
    parts += _attention_html(model, x, top)
    parts.append("<h2>Filters</h2>")
    parts.append(
        '<p class="explain">The learned weights of every convolution. Each small square is one '
        "filter (for colour inputs, the colour it responds to; otherwise one row per filter, "
        "one square per input channel). Bright = large weight, dark = small or negative.</p>"
    )
    for name, layer in conv_layers(model)[:6]:
        w = layer.weight.data
        parts.append(f"<h3>{esc(name)}: {esc(repr(layer))}</h3>")
        parts.append(img(filter_image(w[:64, :32]), f"weights {esc(w.shape)}"))
    parts += ["<h2>Model summary</h2>", _summary_html(model)]
    return page(title, "\n".join(parts))


def _as_picture(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> something colorize draws: grey for 1 channel, RGB for 3, else channel 0."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 3:
        lo, hi = a.min(), a.max()
        return colorize(((a - lo) / (hi - lo if hi > lo else 1.0)).transpose(1, 2, 0))
    if a.ndim == 3:
        return colorize(a[0], "gray")
    return colorize(a[None] if a.ndim == 1 else a, "gray")


def _attention_html(model: Model, x: np.ndarray, target: int) -> list[str]:
    if x.ndim != 4:
        return []
    parts = [
        "<h2>Where the network looks</h2>",
        '<p class="explain">Saliency: how much each pixel would change the winning class\'s '
        "score (the gradient of the score with respect to the input, computed by the "
        "network's own backward pass). Grad-CAM: which regions of the last convolution's "
        "maps pushed the score up.</p>",
        '<div class="maps">',
        img(colorize(saliency_map(saliency(model, x, target))[0], "viridis", 0, 1), "saliency"),
    ]
    try:
        parts.append(img(colorize(grad_cam(model, x, target)[0], "viridis", 0, 1), "Grad-CAM"))
    except ValueError:
        pass  # no convolution: saliency only
    parts.append("</div>")
    return parts


def xo_report(
    walk: dict[str, Any],
    trained: Any | None = None,
    history: dict[str, list[float]] | None = None,
) -> str:
    """The X/O walkthrough as HTML: grids as numbers on colours, stage by stage.

    ``walk`` is :func:`clearconv.viz.xo.walkthrough`'s dict; ``trained`` the
    trained net of :func:`clearconv.viz.xo.train_xo` (its 3x3 features are shown
    beside the hand-made ones) and ``history`` its training history.
    """
    from clearconv.viz.xo import FEATURE_NAMES

    names = walk["class_names"]
    p = [
        "<h1>How a convolutional network tells an X from an O</h1>",
        '<p class="explain">The example of Brandon Rohrer\'s "How convolutional neural networks '
        "work\", computed by clearconv's own layers. Pixels are +1 (ink) or -1 (background).</p>",
        "<h2>1. The images</h2>",
        '<div class="maps">',
    ]
    for k, im in enumerate(walk["images"]):
        cap = f"<figcaption>{esc(names[k])}</figcaption>"
        p.append(f"<figure>{number_grid(im, '{:+.0f}', 1)}{cap}</figure>")
    p += [
        "</div><h2>2. The features</h2>",
        '<p class="explain">Three small 3x3 features: +1 on the feature\'s line, -1 elsewhere.</p>',
        '<div class="maps">',
    ]
    for f, fname in zip(walk["features"], FEATURE_NAMES):
        p.append(
            f"<figure>{number_grid(f, '{:+.0f}', 1)}<figcaption>{esc(fname)}</figcaption></figure>"
        )
    p += [
        "</div><h2>3. Filtering (convolution)</h2>",
        '<p class="explain">Put the feature on a 3x3 patch, multiply pixel by pixel, take the '
        "mean of the 9 products. A perfect match gives 1, a perfect mismatch -1. Sliding over "
        "every position of the 9x9 image gives a 7x7 map (no padding).</p>",
    ]
    for stage, text in (
        ("conv", ""),
        ("relu", '<h2>4. ReLU</h2><p class="explain">Every negative value becomes 0.</p>'),
        (
            "pooled",
            '<h2>5. Max pooling</h2><p class="explain">Windows of 2x2, step 2; keep the '
            "largest value. The 7x7 map has a ragged border: the last row and column form windows "
            "of their own (padded), so the result is 4x4.</p>",
        ),
    ):
        p.append(text)
        for k in range(len(walk["images"])):
            p.append(f'<h3>{esc(names[k])}</h3><div class="maps">')
            for f, fname in enumerate(FEATURE_NAMES):
                grid = number_grid(walk[stage][k, f], vmax=1)
                p.append(f"<figure>{grid}<figcaption>{esc(fname)}</figcaption></figure>")
            p.append("</div>")
    scores, probs = walk["scores"], walk["probabilities"]
    p += [
        "<h2>6. Fully connected: the votes</h2>",
        '<p class="explain">The pooled maps are laid out in one list of 48 values. Each class '
        "has a weight (vote) per value: here the pooled values of that class's own image, "
        "scaled to add up to 1, so a class's score is the vote-weighted average of the list. "
        "Softmax turns the scores into probabilities.</p>",
        '<div class="maps">',
        img(
            colorize(walk["votes"], "diverging"), "votes (rows: " + ", ".join(names) + ")", scale=12
        ),
        img(
            colorize(walk["flat"], "diverging", vmax=1), "flattened values (rows: images)", scale=12
        ),
        "</div>",
        table(
            ["image", *(f"score {n}" for n in names), *(f"P({n})" for n in names)],
            [
                [names[k], *(f"{v:.3f}" for v in scores[k]), *(f"{v:.3f}" for v in probs[k])]
                for k in range(len(scores))
            ],
        ),
    ]
    if trained is not None:
        learned = trained[0].weight.data[:, 0]
        p += [
            "<h2>7. Learned instead of hand-made</h2>",
            '<p class="explain">The same network, started from random weights and trained on '
            "generated X and O images (shifted, scaled, rotated, with uneven strokes). Its "
            "3x3 features, next to the hand-made ones (colours: blue negative, red positive, "
            "each scaled to its largest magnitude):</p>",
            '<div class="maps">',
        ]
        for f, fname in zip(walk["features"], FEATURE_NAMES):
            p.append(img(colorize(f, "diverging"), f"hand-made {fname}", scale=24))
        for i, f in enumerate(learned):
            p.append(img(colorize(f, "diverging"), f"learned #{i}", scale=24))
        p.append("</div>")
        p.append('<div class="maps">')
        for i, f in enumerate(learned):
            p.append(
                f"<figure>{number_grid(f / np.abs(f).max(), vmax=1)}<figcaption>learned #{i} "
                "(scaled)</figcaption></figure>"
            )
        p.append("</div>")
        if history:
            rows = [
                (e + 1, f"{lo:.4f}", f"{a:.3f}")
                for e, (lo, a) in enumerate(zip(history["loss"], history["accuracy"]))
            ]
            p.append(table(("epoch", "training loss", "held-out accuracy"), rows[-10:]))
    return page("clearconv xo: the X/O walkthrough", "\n".join(p))
