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
from clearconv.viz.featuremaps import feature_maps, path_label, trace
from clearconv.viz.filters import conv_layers, filter_tiles
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
    "Concat": "Several branches read the same input side by side (say a 1x1, a 3x3 and a "
    "pooling path) and their maps are stacked into one output.",
    "Add": "Several branches read the same input and their maps are added; a branch that is "
    "Identity passes the input itself (a skip connection).",
    "ReLU6": "ReLU6 keeps values between 0 and 6: negatives become 0, larger values 6.",
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _maps_html(out: np.ndarray, scale: str) -> str:
    """One sample's output: maps as small images, or a vector as a colour strip,
    each with the colour scale that maps values to colours."""
    a = out[0]
    if a.ndim in (2, 3):
        maps = feature_maps(a, scale)  # (C, H, W) in [0, 1]
        raw = np.asarray(a, dtype=np.float32).reshape(len(maps), -1)  # (C, H*W) for ranges
        if scale == "shared":
            key = colour_scale("viridis", float(raw.min()), float(raw.max()))
            caps = [f"#{i}" for i in range(len(maps))]
        else:  # each map stretched to its own range: say the range under each map
            key = colour_scale("viridis", "each map's min", "each map's max")
            caps = [
                f"#{i} ({lo:.3g} to {hi:.3g})"
                for i, lo, hi in zip(range(len(maps)), raw.min(axis=1), raw.max(axis=1))
            ]
        figs = [
            img(colorize(m, "viridis", 0.0, 1.0), caps[i]) for i, m in enumerate(maps[:MAX_MAPS])
        ]
        more = len(maps) - MAX_MAPS
        note = f"<p>... and {more} more maps.</p>" if more > 0 else ""
        return f'{key}<div class="maps">{"".join(figs)}</div>{note}'
    vec = np.asarray(a, dtype=np.float32).reshape(-1)
    cols = min(len(vec), 64)
    tiles = np.pad(vec, (0, -len(vec) % cols)).reshape(-1, cols)
    m = float(np.abs(vec).max())
    key = colour_scale("diverging", -m, m)
    strip = img(colorize(tiles, "diverging", vmax=m), f"{len(vec)} values, {cols} per row", scale=8)
    return f'{key}<div class="maps">{strip}</div>'


def _merged_html(o, scale: str) -> str:
    """A stage's maps; for a merge, each branch's maps as a labelled row below them.

    A Concat's output is its branches' maps stacked, so the stack itself is not
    drawn again (only its first maps would fit): the rows show every branch.
    """
    from clearconv import nn

    if not o.branches:
        return _maps_html(o.output, scale)
    if isinstance(o.layer, nn.Concat):
        sizes = " + ".join(str(b.output.shape[1]) for b in o.branches)
        head = (
            f'<p class="explain">The output stacks the maps of the {len(o.branches)} branches '
            f"below, each run on the same input: {sizes} = {o.output.shape[1]} maps.</p>"
        )
    else:
        head = _maps_html(o.output, scale) + (
            '<p class="explain">The output above is the sum of the branches below, '
            "each run on the same input.</p>"
        )
    return head + _branch_rows(o.branches, scale)


def _branch_rows(branches, scale: str) -> str:
    rows = []
    for i, b in enumerate(branches):
        shape = "x".join(map(str, b.output.shape[1:]))
        anchor = "branch-" + b.name.replace(".", "-")
        inner = _branch_rows(b.branches, scale) if b.branches else _maps_html(b.output, scale)
        rows.append(
            f'<div class="branch" id="{esc(anchor)}"><h3>Branch {i + 1} of {len(branches)} '
            f"<small>({esc(b.name)})</small>: {esc(path_label(b.layer))}; output {esc(shape)}</h3>"
            f"{inner}</div>"
        )
    return f'<div class="branches">{"".join(rows)}</div>'


def _summary_html(model: Model) -> str:
    try:
        from clearconv import summary

        s = summary(model)
        return f"<pre>{esc(str(s))}</pre>"
    except Exception as exc:  # the summary is a courtesy; the walk below is the report
        rows = [(n, repr(m)) for n, m in getattr(model, "net", model).named_modules() if n]
        return f"<p>(summary unavailable: {esc(exc)})</p>" + table(("layer", "module"), rows)


def inspect_report(
    model: Model,
    raw: np.ndarray,
    title: str = "clearconv inspect",
    scale: str = "shared",
    original: np.ndarray | None = None,
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
    original : numpy.ndarray, optional
        The picture as the user gave it, uint8 ``(H, W, 3)`` or ``(H, W)``
        (:func:`clearconv.viz.inputs.decode_image`); shown first, in its own
        colours and proportions, before what the network sees. Without it the
        report starts from ``raw``.

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
        *_input_html(model, raw, x, original),
    ]
    shape_in = tuple(x.shape)
    for i, o in enumerate(outs):
        parts += _stage_header(i, o, shape_in)
        shape_in = tuple(o.output.shape)
        if i < len(outs) - 1:
            parts.append(_merged_html(o, scale))
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
        '<p class="explain">The learned weights of every convolution, each drawn 8 times larger '
        "(one square per weight). For a colour input each filter is one picture: the colour "
        "pattern it responds to. Otherwise a filter has one small square per input channel: "
        "a row per filter, a column per input channel. Each filter is scaled to its own range: "
        "bright = its largest weight, dark = its smallest (most negative).</p>"
    )
    for name, layer in conv_layers(model)[:6]:
        parts += _filters_html(name, layer)
    parts += ["<h2>Model summary</h2>", _summary_html(model)]
    return page(title, "\n".join(parts))


FILTER_ROWS, FILTER_COLS = 16, 8  # filters and input channels drawn per layer
ORIGINAL_SIZE = 224  # the user's picture is shown at most this many pixels on its long side


def colour_scale(cmap: str, lo: float | str, hi: float | str) -> str:
    """A horizontal colour bar from ``lo`` to ``hi`` (numbers or words), as HTML.

    The bar is a CSS gradient through the colour map's stops, so the file stays
    one self-contained page and adds no picture.
    """
    t = np.linspace(-1.0, 1.0, 9) if cmap == "diverging" else np.linspace(0.0, 1.0, 9)
    stops = colorize(t[None], cmap, vmin=0.0, vmax=1.0)[0]  # (9, 3): the bar's colours
    gradient = ", ".join(f"rgb({r},{g},{b})" for r, g, b in stops.tolist())

    def label(v: float | str) -> str:
        return esc(v if isinstance(v, str) else f"{v:.3g}")

    return (
        f'<div class="cscale"><span>{label(lo)}</span>'
        f'<span class="cbar" style="background:linear-gradient(to right, {gradient})"></span>'
        f"<span>{label(hi)}</span></div>"
    )


def _stage_header(i: int, o, shape_in: tuple[int, ...]) -> list[str]:
    """The heading, the layer as written, and the explanation of one stage.

    A block (Residual, Sequential) is shown whole: its heading says what it
    adds, and every layer inside it is listed, not just the first line of its repr.
    """
    from clearconv import nn
    from clearconv.summary import residual_label

    shape = "x".join(map(str, o.output.shape[1:]))
    kind = o.kind
    if isinstance(o.layer, nn.Residual):
        kind = residual_label(o.layer, shape_in, tuple(o.output.shape)).replace(
            "Residual add", "Residual block"
        )
    lines = repr(o.layer).splitlines()
    written = (
        f'<pre class="layer">{esc(repr(o.layer))}</pre>'
        if len(lines) > 1
        else f"<p><code>{esc(lines[0])}</code></p>"
    )
    explain = _EXPLAIN.get(o.kind, "")
    if isinstance(o.layer, nn.Residual) and o.layer.shortcut is not None:
        explain += (
            " Here the block changes the size of the maps, so the input first goes "
            "through a shortcut (listed below as shortcut) that gives it the same size."
        )
    return [
        f"<h2>Stage {i + 1}: {esc(kind)} <small>({esc(o.name)})</small></h2>",
        f"<p>{esc('x'.join(map(str, shape_in[1:])))} → output {esc(shape)}</p>",
        written,
        f'<p class="explain">{esc(explain)}</p>',
    ]


def _input_html(model: Model, raw: np.ndarray, x: np.ndarray, original) -> list[str]:
    """The user's picture as given, then what the network reads (resized, normalised)."""
    size = "x".join(map(str, model.input_shape[1:]))
    first = (
        img(_as_picture(raw[0]), "input (as given to the model)")
        if original is None
        else img(
            _thumbnail(original), f"your image ({original.shape[1]}x{original.shape[0]} pixels)"
        )
    )
    return [
        '<p class="explain">Left: the picture as given. Right: what the network reads, '
        f"{esc(size)} pixels after preprocessing (for digit models: inverted to light ink on "
        "black, cropped, fitted into 20x20 and centred, as MNIST was made; otherwise resized) "
        "and normalisation.</p>",
        '<div class="maps">',
        first,
        img(_as_picture(x[0]), f"what the network sees ({size})"),
        "</div>",
    ]


def _thumbnail(picture: np.ndarray) -> np.ndarray:
    """The user's picture as uint8 RGB, at most :data:`ORIGINAL_SIZE` on its long side."""
    from PIL import Image

    a = np.asarray(picture, dtype=np.uint8)
    im = Image.fromarray(a).convert("RGB")
    if max(im.size) > ORIGINAL_SIZE:
        im.thumbnail((ORIGINAL_SIZE, ORIGINAL_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def _filters_html(name: str, layer) -> list[str]:
    """One convolution's kernels, 8x larger, labelled by filter and input channel."""
    w = layer.weight.data
    o, c = w.shape[:2]
    shown = w[:FILTER_ROWS, :FILTER_COLS]
    tiles = filter_tiles(shown)  # per filter: (O, kH, kW, 3) colour or (O*C, kH, kW) grey
    k = max(tiles.shape[1:3])
    s = max(8, 32 // k)  # 8x or more (10x for 3x3, 32x for 1x1), so each weight is visible
    more = []
    if o > FILTER_ROWS:
        more.append(f"the first {FILTER_ROWS} of {o} filters")
    if c > FILTER_COLS and tiles.ndim == 3:
        more.append(f"the first {FILTER_COLS} of {c} input channels")
    note = f"<p>Showing {' and '.join(more)}.</p>" if more else ""
    head = [f"<h3>{esc(name)}: {esc(repr(layer))}</h3>", note]
    if tiles.ndim == 4:  # colour kernels: one picture per filter
        figs = [img(colorize(t), f"filter {i}", scale=s) for i, t in enumerate(tiles)]
        return [*head, f'<div class="maps">{"".join(figs)}</div>']
    grid = tiles.reshape(len(shown), shown.shape[1], *tiles.shape[1:])  # (O, C, kH, kW)
    cols = "".join(f"<th>in {j}</th>" for j in range(grid.shape[1]))
    rows = "".join(
        f"<tr><th>filter {i}</th>"
        + "".join(f"<td>{img(colorize(t, 'gray', 0.0, 1.0), scale=s)}</td>" for t in row)
        + "</tr>"
        for i, row in enumerate(grid)
    )
    return [*head, f'<table class="filters"><tr><th></th>{cols}</tr>{rows}</table>']


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


STRIP_SCALE = 12  # pixels per value in the 48-value strips of the X/O votes


def _strips_html(rows: np.ndarray, labels: list[str], what: str) -> str:
    """A few rows of 48 values as colour strips, with row labels, an axis and a colour scale.

    The 48 values are the three pooled 4x4 maps one after the other, so the axis
    names the feature each third of the strip comes from.
    """
    from clearconv.viz.xo import FEATURE_NAMES

    rows = np.asarray(rows, dtype=np.float64)
    m = float(np.abs(rows).max()) or 1.0
    strips = "".join(
        f'<div class="strip"><span class="rowlab">{esc(lab)}</span>'
        f"{img(colorize(r[None], 'diverging', vmax=m), scale=STRIP_SCALE)}</div>"
        for lab, r in zip(labels, rows)
    )
    per = rows.shape[1] // len(FEATURE_NAMES)
    ticks = "".join(
        f'<span style="width:{per * STRIP_SCALE}px">{esc(name)}: values '
        f"{i * per + 1}-{(i + 1) * per}</span>"
        for i, name in enumerate(FEATURE_NAMES)
    )
    axis = f'<div class="strip"><span class="rowlab"></span><div class="ticks">{ticks}</div></div>'
    key = colour_scale("diverging", -m, m)
    return f'<div class="strips"><p>{esc(what)}, value by value:</p>{strips}{axis}{key}</div>'


def _close_scores_html(scores: np.ndarray, names: list[str]) -> str:
    """One sentence on why two close scores give probabilities near 50/50."""
    s = np.asarray(scores, dtype=np.float64)
    d = float(s[0] - s[1])
    p = 1.0 / (1.0 + np.exp(-d))
    return (
        f'<p class="explain">Why is P({esc(names[0])}) only {p:.3f} for the X? Softmax '
        "depends only on how far apart the scores are, and these are close: "
        f"{s[0]:.3f} - {s[1]:.3f} = {d:.3f}, and P({esc(names[0])}) = 1 / (1 + exp(-{d:.3f})) "
        f"= {p:.3f}. Scores 3 apart would give 0.95; these scores are averages of values "
        "between 0 and 1, so they cannot be far apart.</p>"
    )


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
    # Over 80 lines: one page written top to bottom in the order the reader
    # sees its sections (images, features, filtering, ReLU, pooling, votes).
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
        _strips_html(walk["votes"], [f"votes for {n}" for n in names], "the votes (weights)"),
        _strips_html(walk["flat"], [f"image {n}" for n in names], "the flattened values"),
        table(
            ["image", *(f"score {n}" for n in names), *(f"P({n})" for n in names)],
            [
                [names[k], *(f"{v:.3f}" for v in scores[k]), *(f"{v:.3f}" for v in probs[k])]
                for k in range(len(scores))
            ],
        ),
        _close_scores_html(scores[0], names),
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
            shown = rows[-10:]
            last = "" if len(shown) == len(rows) else f" (the last {len(shown)})"
            p.append(
                f"<h3>Training: epochs {shown[0][0]}-{len(rows)} of {len(rows)}{last}</h3>"
                '<p class="explain">Loss on the training images, accuracy on images the '
                "network never trained on.</p>"
            )
            p.append(table(("epoch", "training loss", "held-out accuracy"), shown))
    return page("clearconv xo: the X/O walkthrough", "\n".join(p))
