"""What a sound or a text model looks at: HTML reports for ``clearconv inspect``.

Sound: the waveform, the spectrogram as the network sees it (standardized,
low pitches at the bottom), and every stage's feature maps along time
(channels as rows; a 2-D stage shows its strongest frequency row per channel).

Text: the words with the per-word saliency (gradient times input, summed over
the word vector's entries: positive words pushed the score of the predicted
class up), and the strongest filters of a Kim-style CNN: for each, the window
of words at its max-over-time position and how much it added to the score
(its pooled value times its weight in the last Linear layer).
"""

from __future__ import annotations

import numpy as np

from clearconv.model import Model
from clearconv.nn.container import Sequential
from clearconv.nn.linear import Linear
from clearconv.nn.merge import Concat
from clearconv.nn.module import Module
from clearconv.nn.sequence import AdaptiveMaxPool1d, Embedding
from clearconv.viz.featuremaps import stages
from clearconv.viz.html import bars, esc, img, page, table
from clearconv.viz.saliency import saliency

__all__ = ["envelope", "filter_windows", "sound_report", "text_report", "word_saliency"]


def envelope(samples: np.ndarray, width: int = 400, height: int = 80) -> np.ndarray:
    """A waveform drawn as an image ``(height, width)``: 1 between each column's
    lowest and highest sample, 0 elsewhere.

    Example
    -------
    >>> e = envelope(np.array([0.0, 1.0, -1.0, 0.0]), width=2, height=5)
    >>> e.astype(int).T.tolist()  # columns: from 0 up to 1, then from -1 up to 0
    [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]]
    """
    x = np.asarray(samples, np.float32)
    n = len(x) // width * width or len(x)
    cols = x[:n].reshape(min(width, n), -1)  # (width, samples per column)
    peak = max(float(np.abs(x).max()), 1e-8)
    lo, hi = cols.min(axis=1) / peak, cols.max(axis=1) / peak  # (width,) in [-1, 1]
    level = np.linspace(1, -1, height, dtype=np.float32)[:, None]  # (height, 1), top = +1
    step = 1.0 / height
    return ((level >= lo - step) & (level <= hi + step)).astype(np.float32)


def _along_time(out: np.ndarray) -> np.ndarray | None:
    """One sample's stage output as channels x time, or None when it has no time axis."""
    if out.ndim == 3:  # (1, C, T)
        return out[0]
    if out.ndim == 4:  # (1, C, F, T): the strongest frequency row of each channel
        return out[0].max(axis=1)
    return None


def sound_report(model: Model, x: np.ndarray, samples: np.ndarray, title: str) -> str:
    """The HTML page for one recording: ``x`` is the model's input ``(1, *input_shape)``,
    ``samples`` the recording as read (for the waveform)."""
    z = model.preprocess(x)
    probs = model.predict_proba(x)[0]
    top = int(probs.argmax())
    names = list(model.class_names)
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>prediction: <b>{esc(names[top])}</b> ({probs[top]:.1%})</p>",
             bars(probs, names), "<h2>The recording</h2>",
             img(envelope(samples), f"waveform, {len(samples):,} samples", scale=1)]  # fmt: skip
    if z.ndim == 4:
        parts += ["<h2>The spectrogram as the network sees it</h2>",
                  '<p class="explain">Rows are mel bands (low pitches at the bottom), columns '
                  "10 ms steps; each recording is standardized to mean 0, std 1.</p>",
                  img(z[0, 0, ::-1], "log-mel input", cmap="viridis", scale=3)]  # fmt: skip
    parts += ["<h2>Feature maps along time</h2>",
              '<p class="explain">Each stage: one row per channel, time left to right '
              "(2-D stages: the strongest frequency of each channel).</p>"]  # fmt: skip
    h = z
    for name, layer in stages(model):
        h = layer(h, training=False)
        rows = _along_time(h)
        if rows is not None and rows.shape[-1] > 1:
            caption = f"{name}: {type(layer).__name__} {tuple(h.shape[1:])}"
            parts.append(img(rows, caption, cmap="viridis", scale=max(1, 400 // rows.shape[1])))
    return page(title, "\n".join(parts))


def _split(model: Module) -> tuple[Embedding, Sequential]:
    """A text net as its Embedding and the rest (which reads word vectors)."""
    layers = [m for _, m in stages(model)]
    if not layers or not isinstance(layers[0], Embedding):
        raise ValueError("the model does not start with an Embedding: it does not read words")
    return layers[0], Sequential(*layers[1:])


def word_saliency(model: Module, tokens: np.ndarray, target: int) -> np.ndarray:
    """``(L,)`` gradient x input per position: how each word moved class ``target``'s score."""
    emb, rest = _split(model)
    vectors = emb(tokens, training=False)  # (1, L, D)
    grad = saliency(rest, vectors, target)  # (1, L, D)
    return (grad * vectors).sum(axis=-1)[0]


def filter_windows(model: Module, tokens: np.ndarray, target: int, top: int = 5) -> list[dict]:
    """The ``top`` filters that added most to ``target``'s score: their width, the first
    position of their max-over-time window, and their contribution."""
    emb, rest = _split(model)
    layers = [m for _, m in rest.children()]
    concat = next((m for m in layers if isinstance(m, Concat)), None)
    linear = [m for m in layers if isinstance(m, Linear)]
    if concat is None or not linear:
        return []
    h = emb(tokens, training=False)
    for layer in layers[: layers.index(concat)]:
        h = layer(h, training=False)  # up to the branches: (1, D, L)
    found = []  # (width, position, pooled value) for every filter of every branch
    for branch in concat:
        inner = [m for _, m in branch.children()] if isinstance(branch, Sequential) else [branch]
        conv = next((m for m in inner if hasattr(m, "kernel_size")), None)
        g = h
        for m in inner:
            if isinstance(m, AdaptiveMaxPool1d):
                break
            g = m(g, training=False)  # (1, F, T)
        width = conv.kernel_size[0] if conv is not None else 1
        pos, val = g[0].argmax(axis=-1), g[0].max(axis=-1)  # (F,)
        found += [(width, int(p), float(v)) for p, v in zip(pos, val, strict=True)]
    w = linear[-1].weight.data[target]
    if len(w) != len(found):
        return []
    gain = np.array([v for _, _, v in found]) * w
    order = np.argsort(-gain)[:top]
    return [{"width": found[i][0], "start": found[i][1], "contribution": float(gain[i])}
            for i in order]  # fmt: skip


def text_report(model: Model, tokens: np.ndarray, words: list[str], title: str) -> str:
    """The HTML page for one sentence: ``tokens`` ``(1, L)``, ``words`` its tokens as read."""
    probs = model.predict_proba(tokens)[0]
    top = int(probs.argmax())
    names = list(model.class_names)
    shown = words[: tokens.shape[1]]
    sal = word_saliency(model, tokens, top)[: len(shown)]
    vmax = max(float(np.abs(sal).max()), 1e-8)
    spans = []
    for word, s in zip(shown, sal, strict=True):
        a = min(1.0, abs(float(s)) / vmax)
        colour = f"rgba(178,24,43,{a:.2f})" if s > 0 else f"rgba(33,102,172,{a:.2f})"
        spans.append(f'<span style="background:{colour};padding:2px 3px" '
                     f'title="{float(s):+.3f}">{esc(word)}</span>')  # fmt: skip
    rows = []
    for f in filter_windows(model, tokens, top):
        window = shown[f["start"] : f["start"] + f["width"]] or ["<pad>"]
        rows.append([f["width"], f["start"], " ".join(window), f"{f['contribution']:+.3f}"])
    body = [f"<h1>{esc(title)}</h1>",
            f"<p>prediction: <b>{esc(names[top])}</b> ({probs[top]:.1%})</p>",
            bars(probs, names), "<h2>Saliency per word</h2>",
            '<p class="explain">Gradient x input of each word vector for the predicted class: '
            "red words pushed towards it, blue ones away (hover for the value).</p>",
            f'<p style="font-size:1.3em;line-height:2">{" ".join(spans)}</p>',
            "<h2>The strongest filters</h2>",
            '<p class="explain">Each filter keeps its strongest match anywhere in the sentence '
            "(max over time); these added most to the predicted class's score.</p>",
            table(["width", "position", "words", "contribution"], rows)]  # fmt: skip
    return page(title, "\n".join(body))
