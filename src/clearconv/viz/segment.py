"""One image through a segmentation net: its prediction, overlay, and the maps of every
block down the encoder and back up the decoder.

A U-Net nests its levels inside Concat branches, so the top-level stages of
:func:`clearconv.viz.trace` would show one stage per level. :func:`walk` goes
inside instead: Sequentials run their layers, Concats their branches, and
every leaf layer's output is kept under its dotted name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clearconv import nn
from clearconv.viz._image import colorize
from clearconv.viz.featuremaps import feature_maps
from clearconv.viz.html import esc, img, page, table

__all__ = ["Block", "blocks", "segment_report", "walk"]

#: Maps shown per block.
MAX_MAPS = 16


def walk(module: nn.Module, x: np.ndarray, name: str = "") -> tuple[np.ndarray, list]:
    """The output of ``module`` on ``x`` and ``[(name, leaf layer, output), ...]`` in run order."""
    if isinstance(module, nn.Sequential):
        records: list = []
        for child_name, child in module.children():
            x, more = walk(child, x, f"{name}{child_name}.")
            records += more
        return x, records
    if isinstance(module, nn.Concat):
        outs, records = [], []
        for child_name, child in module.children():
            y, more = walk(child, x, f"{name}{child_name}.")
            outs.append(y)
            records += more
        return np.concatenate(outs, axis=module.dim), records
    y = module(x, training=False)
    return y, [(name.rstrip("."), module, y)]


@dataclass(frozen=True)
class Block:
    """The output of one block (the ReLU that ends it): ``where`` is down, bottom or up."""

    name: str
    where: str
    output: np.ndarray


def blocks(records: list) -> list[Block]:
    """The block ends among ``records``: a ReLU not followed by a convolution, and the last ReLU.

    Blocks before the smallest size are the encoder ("down"), those after it the
    decoder ("up"), those at it the "bottom".
    """
    ends = []
    relus = [i for i, r in enumerate(records) if isinstance(r[1], nn.ReLU)]
    for i in relus:
        nxt = records[i + 1][1] if i + 1 < len(records) else None
        if i == relus[-1] or not isinstance(nxt, (nn.Conv2d, nn.BatchNorm2d)):
            ends.append(records[i])
    if not ends:
        return []
    sizes = [r[2].shape[2] * r[2].shape[3] for r in ends]
    low = min(sizes)
    first_low, last_low = sizes.index(low), len(sizes) - 1 - sizes[::-1].index(low)
    out = []
    for j, (name, _, y) in enumerate(ends):
        where = "down" if j < first_low else "up" if j > last_low else "bottom"
        out.append(Block(name, where, y))
    return out


def segment_report(
    model, raw: np.ndarray, title: str = "clearconv inspect", scale: str = "shared"
) -> str:
    """The HTML report of one image ``(1, C, H, W)`` through a per-pixel ``model``."""
    from clearconv import segmentation

    x = model.preprocess(raw)
    logits, records = walk(model.net, x)
    mask = logits[0].argmax(axis=0)
    names = list(model.class_names)
    counts = np.bincount(mask.ravel(), minlength=len(names))
    image = raw[0] if raw.dtype == np.uint8 else np.round(np.clip(raw[0], 0, 1) * 255)
    image = image.astype(np.uint8)
    colours = segmentation.colour_mask(mask)
    parts = [
        f"<h1>{esc(title)}</h1>",
        '<p class="explain">A segmentation network gives every pixel a class. Its encoder '
        "shrinks the picture into fewer, richer maps (what is there); its decoder grows them "
        "back to full size (where it is), taking the encoder's sharp early maps across the "
        "skips.</p>",
        "<h2>Input, prediction and overlay</h2>",
        '<div class="maps">',
        img(image.transpose(1, 2, 0) if image.shape[0] == 3 else colorize(image[0]), "input"),
        img(colours, "predicted classes"),
        img(segmentation.overlay(image, mask), "overlay"),
        "</div>",
        table(
            ("class", "colour", "pixels"),
            [
                (n, "rgb" + str(tuple(int(v) for v in segmentation.colour_mask(np.array(i)))), c)
                for i, (n, c) in enumerate(zip(names, counts.tolist()))
            ],
        ),
    ]
    titles = {
        "down": "Down the encoder",
        "bottom": "At the bottom",
        "up": "Up the decoder",
    }
    shown = None
    for b in blocks(records):
        if b.where != shown:
            parts.append(f"<h2>{titles[b.where]}</h2>")
            shown = b.where
        c, h, w = b.output.shape[1:]
        parts.append(f"<h3>{esc(b.name)}: {c} maps of {h}x{w}</h3>")
        maps = feature_maps(b.output[0], scale)[:MAX_MAPS]
        figs = [img(colorize(m, "viridis", 0.0, 1.0), f"#{i}") for i, m in enumerate(maps)]
        parts.append(f'<div class="maps">{"".join(figs)}</div>')
    return page(title, "\n".join(parts))


def segment_result(model, raw: np.ndarray, maps: bool) -> dict:
    """The web page's answer for a per-pixel model: pixel shares per class, the overlay and,
    with ``maps``, the preprocessed input and the maps of every block (``/api/featuremaps``).

    ``probabilities`` holds each class's share of the pixels and ``top`` the class with
    the most pixels after class 0 (the background), when any is predicted.
    """
    from clearconv import segmentation
    from clearconv.viz._image import data_uri, png_bytes

    x = model.preprocess(raw)
    logits, records = walk(model.net, x)
    mask = logits[0].argmax(axis=0)
    names = list(model.class_names)
    shares = np.bincount(mask.ravel(), minlength=len(names)) / mask.size
    top = int(shares[1:].argmax()) + 1 if len(names) > 1 and shares[1:].any() else 0
    image = raw[0] if raw.dtype == np.uint8 else np.round(np.clip(raw[0], 0, 1) * 255)
    overlay = segmentation.overlay(image.astype(np.uint8), mask)
    scale = max(1, 256 // max(mask.shape))
    result: dict = {
        "classes": names,
        "probabilities": [round(float(s), 6) for s in shares],
        "top": {"class": names[top], "index": top, "probability": round(float(shares[top]), 6)},
        "overlay": data_uri(png_bytes(overlay, scale)),
    }
    if maps:
        pic = x[0, 0] if x.shape[1] == 1 else x[0].mean(axis=0)
        result["input"] = data_uri(png_bytes(colorize(pic, "gray"), scale))
        result["layers"] = []
        for b in blocks(records):
            ms = feature_maps(b.output[0], "shared")[:MAX_MAPS]
            s = max(1, 56 // max(ms.shape[1:]))
            result["layers"].append(
                {
                    "name": b.name,
                    "type": f"{b.where} block",
                    "shape": list(b.output.shape[1:]),
                    "maps": [data_uri(png_bytes(colorize(m, "viridis", 0, 1), s)) for m in ms],
                }
            )
    return result
