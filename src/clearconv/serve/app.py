"""The web app: a drawing page and a small JSON API over one model.

Routes
------
``GET /``
    The page: a canvas to draw on (mouse, pen, touch), an image upload, the
    class probabilities and every layer's feature maps, updated as one draws.
``GET /static/app.js``, ``GET /static/style.css``
    The page's two assets (a fixed list of names: no directory listing, no paths).
``GET /api/model``
    ``{"input_shape", "class_names", "layers": [{"name", "type", "output_shape",
    "params"}], "summary": str, "meta"}``; each ``output_shape`` starts with
    ``null`` for the batch size (as ``N`` in the summary table).
``POST /api/predict``
    The body is an image: ``multipart/form-data`` (a file field, e.g. ``image``),
    raw bytes (``image/png``, ``image/jpeg``, ... or ``application/octet-stream``),
    or JSON ``{"pixels": [[...]]}`` (a grey ``H x W`` or ``H x W x 3`` grid,
    0-255, or floats in [0, 1]; 0 is black). Returns ``{"classes": [...],
    "probabilities": [...], "top": {"class", "index", "probability"}}``.
``POST /api/featuremaps``
    The same body; returns the prediction plus ``"input"`` (PNG data URI of
    the preprocessed input) and ``"layers": [{"name", "type", "shape",
    "maps": [PNG data URI, ...]}]`` (at most 32 maps per layer). A layer that
    merges branches (Concat, Add, Residual) also has ``"branches"``: one entry
    per branch, the same fields plus ``"label"`` (its layers in a few words),
    and ``"branches"`` again where a branch is itself a merge.

Errors are JSON ``{"error": message}`` without stack traces: 400 for an
unreadable image or bad JSON, 404, 405, 408 for a body not sent within
``BODY_TIMEOUT_S`` (10 s), 413 for a body over the size limit (2 MB by
default), 415 for a content type that is not an image or JSON.
"""

from __future__ import annotations

import asyncio
import json
import threading
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from clearconv.data.audio import AudioFeatures
from clearconv.data.idx import DataError
from clearconv.viz._image import colorize, data_uri, png_bytes
from clearconv.viz.featuremaps import feature_maps, path_label, trace
from clearconv.viz.inputs import ImageError, decode_image, prepare
from clearconv.viz.segment import segment_result
from clearconv.viz.soundtext import envelope

__all__ = ["MAX_BYTES", "create_app"]

MAX_BYTES = 2 * 1024 * 1024
#: Seconds a client has to send its whole request body (else 408).
BODY_TIMEOUT_S = 10.0
MAX_MAPS = 32
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_IMAGE_TYPES = ("image/", "application/octet-stream")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _static(name: str) -> str:
    # One name per joinpath: Python 3.10's Traversable.joinpath takes a single child.
    static = resources.files("clearconv.serve").joinpath("static")
    return static.joinpath(name).read_text(encoding="utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad Content-Length header")
        if int(length) > limit:
            raise ApiError(413, f"request body of {int(length)} bytes is over the limit of {limit}")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():  # chunked uploads are counted as they come
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)

    # uvicorn times out idle keep-alive connections but not a slow body: a client
    # trickling bytes would hold the request open forever.
    try:
        await asyncio.wait_for(read(), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {BODY_TIMEOUT_S:g} s") from None
    return b"".join(chunks)


def _pixels(data: Any) -> np.ndarray:
    if not isinstance(data, dict) or "pixels" not in data:
        raise ApiError(400, 'expected JSON {"pixels": [[...], ...]}')
    try:
        a = np.asarray(data["pixels"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"pixels must be a rectangular grid of numbers ({exc})") from exc
    if (
        a.ndim not in (2, 3)
        or (a.ndim == 3 and a.shape[-1] != 3)
        or min(a.shape[:2], default=0) < 1
    ):
        raise ApiError(400, f"pixels must be H x W (grey) or H x W x 3 (RGB), got shape {a.shape}")
    if a.shape[0] * a.shape[1] > 4096 * 4096 or not np.all(np.isfinite(a)):
        raise ApiError(400, "pixels must be finite and at most 4096 x 4096")
    if a.min() < 0 or a.max() > 255:
        raise ApiError(400, "pixel values must be in [0, 255] (or floats in [0, 1])")
    if a.max() > 1.0:
        a = a / 255.0
    return np.round(a * 255).astype(np.uint8)


async def _image(request: Request, limit: int) -> np.ndarray:
    """The request's image as uint8 (H, W) or (H, W, 3)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype.startswith(_IMAGE_TYPES) or ctype in ("application/json", "multipart/form-data")):
        raise ApiError(
            415,
            f"unsupported content type {ctype or '(none)'!r}: send an image (image/png, "
            'image/jpeg, multipart/form-data) or JSON {"pixels": [[...]]}',
        )
    body = await _read_body(request, limit)
    if not body:
        raise ApiError(400, "empty request body: send an image")
    if ctype == "application/json":
        try:
            return _pixels(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"invalid JSON ({exc})") from exc
    if ctype == "multipart/form-data":
        body = await _multipart_file(request, body)
    try:
        return decode_image(body)
    except ImageError as exc:
        raise ApiError(400, str(exc)) from exc


async def _recording(request: Request, limit: int) -> bytes:
    """The request's WAV file (for a sound model), as bytes."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    wav = ctype.startswith(("audio/", "application/octet-stream"))
    if not (wav or ctype == "multipart/form-data"):
        raise ApiError(
            415,
            f"unsupported content type {ctype or '(none)'!r}: this model reads sound, send a "
            "WAV recording (audio/wav or multipart/form-data)",
        )
    body = await _read_body(request, limit)
    if not body:
        raise ApiError(400, "empty request body: send a WAV recording")
    if ctype == "multipart/form-data":
        body = await _multipart_file(request, body)
    return body


async def _multipart_file(request: Request, body: bytes) -> bytes:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=20).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"bad multipart body ({exc.message})") from exc
    for _, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            await value.close()
            return data
    raise ApiError(400, "multipart body has no file: send the image in a file field")


def _summary(model) -> tuple[str, list[dict[str, Any]]]:
    try:
        from clearconv import summary

        s = summary(model)
        rows = [
            {
                "name": r.name,
                "type": r.layer,
                "output_shape": [None, *r.output_shape[1:]],  # any batch size, as the table's N
                "params": r.params,
            }
            for r in s.rows
        ]
        return str(s), rows
    except Exception:  # the summary is informative only; the walk works without it
        rows = [{"name": n, "type": type(m).__name__} for n, m in model.layers()]
        return "", rows


def _probabilities(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def create_app(model, max_bytes: int = MAX_BYTES) -> Starlette:
    """The Starlette app serving ``model`` (a :class:`clearconv.Model`).

    Parameters
    ----------
    model : clearconv.Model
        Used for every request (a lock keeps one forward pass at a time, since
        layers cache their inputs).
    max_bytes : int
        Largest request body; larger ones get 413.
    """
    # Over 80 lines: the handlers are closures over one model, its lock and
    # its summary, and read best beside the route table that names them.
    lock = threading.Lock()
    summary_text, summary_rows = _summary(model)
    names = list(model.class_names)

    sound = model.meta.get("features") if isinstance(model.meta, dict) else None
    features = AudioFeatures.from_dict(sound) if isinstance(sound, dict) else None

    def run_model(img: np.ndarray | bytes, maps: bool) -> dict[str, Any]:
        try:
            if isinstance(img, bytes):  # a recording, for a sound model
                raw = features.from_file(img, name="the upload")  # type: ignore[union-attr]
            else:
                raw = prepare(model, img)
        except (ValueError, DataError) as exc:
            raise ApiError(400, str(exc)) from exc
        if model.per_pixel:  # a class per pixel: shares, overlay, encoder/decoder maps
            with lock:
                return segment_result(model, raw, maps)
        with lock:
            x = model.preprocess(raw)
            outs = trace(model, x)
        probs = _probabilities(outs[-1].output[0])
        top = int(probs.argmax())
        result: dict[str, Any] = {
            "classes": names,
            "probabilities": [round(float(p), 6) for p in probs],
            "top": {"class": names[top], "index": top, "probability": round(float(probs[top]), 6)},
        }
        if maps:
            pic = x[0, 0] if x.shape[1] == 1 else x[0].mean(axis=0)
            if pic.ndim == 1:  # a waveform: drawn as its envelope
                pic = envelope(pic, width=224, height=56)
            elif features is not None:  # a spectrogram: low pitches at the bottom
                pic = pic[::-1]
            result["input"] = data_uri(png_bytes(colorize(pic, "gray"), 4))
            result["layers"] = [_layer_json(o) for o in outs[:-1]]
        return result

    async def read(request: Request) -> np.ndarray | bytes:
        return await (_image if features is None else _recording)(request, max_bytes)

    async def predict(request: Request) -> JSONResponse:
        img = await read(request)
        return JSONResponse(await run_in_threadpool(run_model, img, False))

    async def featuremaps(request: Request) -> JSONResponse:
        img = await read(request)
        return JSONResponse(await run_in_threadpool(run_model, img, True))

    async def model_info(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "input_shape": list(model.input_shape),
                "class_names": names,
                "layers": summary_rows,
                "summary": summary_text,
                "meta": json.loads(json.dumps(model.meta, default=str)),
            }
        )

    index_html = _static("index.html")
    assets = {name: _static(name) for name in _STATIC}

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(index_html)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:  # a fixed list: no listing, no path traversal
            raise ApiError(404, "not found")
        return Response(assets[name], media_type=_STATIC[name])

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ApiError):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        if isinstance(exc, HTTPException):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return JSONResponse({"error": "internal error"}, status_code=500)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/model", model_info, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/featuremaps", featuremaps, methods=["POST"]),
    ]
    handlers = {ApiError: api_error, HTTPException: api_error, Exception: api_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _layer_json(o) -> dict[str, Any]:
    a = o.output[0]
    entry: dict[str, Any] = {"name": o.name, "type": o.kind, "shape": list(a.shape)}
    if o.branches:
        entry["branches"] = [{"label": path_label(b.layer), **_layer_json(b)} for b in o.branches]
    if a.ndim == 2 and a.shape[1] > 1:  # a 1-D stage (C, T): channels as rows over time
        rows = a / max(float(np.abs(a).max()), 1e-8)
        entry["maps"] = [data_uri(png_bytes(colorize(rows, "viridis"), 1))]
    elif a.ndim in (2, 3):
        maps = feature_maps(a, "shared")[:MAX_MAPS]
        scale = max(1, 56 // max(maps.shape[1:]))
        entry["maps"] = [data_uri(png_bytes(colorize(m, "viridis", 0, 1), scale)) for m in maps]
    else:
        vec = a.reshape(-1)
        cols = min(len(vec), 64)
        grid = np.pad(vec, (0, -len(vec) % cols)).reshape(-1, cols)
        entry["maps"] = [data_uri(png_bytes(colorize(grid, "diverging"), 4))]
    return entry
