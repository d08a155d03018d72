"""Small HTML building blocks for self-contained reports (no template engine, no external assets).

Every text goes through :func:`html.escape`; images are inlined as base64 PNG.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from clearconv.viz._image import auto_scale, colorize, data_uri, png_bytes

__all__ = ["esc", "img", "number_grid", "page", "table"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.explain{color:#444;max-width:60em}
.maps{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end}
figure{margin:0;text-align:center;font-size:.8em;color:#555}
img{image-rendering:pixelated;border:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.grid{font-size:1.1em}
table.grid td{width:3em;height:2em;text-align:center;font-size:1em;
font-family:ui-monospace,Menlo,Consolas,monospace}
.strip{display:flex;align-items:center;gap:8px;margin:2px 0}
.strip figure{line-height:0}.strip img{border:none}
.strip .rowlab{width:7.5em;text-align:right;font-size:.8em;color:#444}
.ticks{display:flex}
.ticks span{font-size:.75em;color:#444;text-align:center;border-top:1px solid #888;
border-left:1px solid #888;box-sizing:border-box}
.bar{display:inline-block;height:.9em;background:#2166ac;vertical-align:middle}
code,pre{background:#f5f5f5;padding:1px 3px}
pre.layer{font-size:.8em;max-height:16em;overflow:auto}
.cscale{display:flex;align-items:center;gap:6px;font-size:.8em;color:#444;margin:.4em 0}
.cbar{display:inline-block;width:180px;height:12px;border:1px solid #bbb}
table.filters td,table.filters th{border:none;padding:1px 3px;font-size:.8em;font-weight:normal}
table.filters img{display:block}
.branches{margin:.6em 0 .6em .4em}
.branch{border-left:4px solid #9ecae1;padding:.1em 0 .4em .8em;margin:.5em 0}
.branch h3{font-size:.95em;margin:.2em 0}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML document with the report's inline style."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def img(
    array: np.ndarray,
    caption: str = "",
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    scale: int | None = None,
    alt: str | None = None,
) -> str:
    """A ``<figure>`` with the array drawn as an inlined PNG (uint8 RGB is used as it is)."""
    a = np.asarray(array)
    rgb = a if a.dtype == np.uint8 and a.ndim == 3 else colorize(a, cmap, vmin, vmax)
    s = scale or auto_scale(*rgb.shape[:2])
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="{data_uri(png_bytes(rgb, s))}" alt="{esc(alt or caption)}" '
        f'width="{rgb.shape[1] * s}" height="{rgb.shape[0] * s}">{cap}</figure>'
    )


def number_grid(a: np.ndarray, fmt: str = "{:.2f}", vmax: float | None = None) -> str:
    """A 2-D array as a table of numbers on diverging colours (blue < 0 < red)."""
    a = np.asarray(a, dtype=np.float64)
    rgb = colorize(a, "diverging", vmax=vmax)
    rows = []
    for i in range(a.shape[0]):  # a handful of rows of a small grid, for display only
        cells = "".join(
            f'<td style="background:rgb({r},{g},{b});color:{_ink(r, g, b)}">'
            f"{esc(fmt.format(a[i, j]))}</td>"
            for j, (r, g, b) in enumerate(rgb[i].tolist())
        )
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="grid">{"".join(rows)}</table>'


def _ink(r: int, g: int, b: int) -> str:
    """Black or white text, whichever reads on this background (relative luminance)."""
    return "#000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else "#fff"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bars(values: Sequence[float] | np.ndarray, labels: Sequence[str], fmt: str = "{:.3f}") -> str:
    """A table of horizontal bars (for probabilities in [0, 1])."""
    rows = []
    for lab, v in zip(labels, values):
        w = max(0.0, min(1.0, float(v))) * 200
        rows.append(
            f'<tr><th>{esc(lab)}</th><td style="text-align:left"><span class="bar" '
            f'style="width:{w:.0f}px"></span> {esc(fmt.format(float(v)))}</td></tr>'
        )
    return f"<table>{''.join(rows)}</table>"
