"""From an image (file, bytes or pixels) to the raw input batch a model expects.

Digit models (one 28x28 channel, classes "0".."9") get the MNIST treatment of
:func:`clearconv.data.mnist_preprocess` (invert a light background, crop, fit in
20x20, centre the mass), so a drawing or a photo looks like an MNIST digit.
X/O models get +1 ink / -1 background. Other models get the image resized to
their input size. ``model.preprocess`` then does the normalisation.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np

from clearconv.data import mnist_preprocess

__all__ = ["ImageError", "decode_image", "is_digit_model", "prepare"]


#: What :func:`decode_image` reads, for messages (Pillow reads a few more).
IMAGE_FORMATS = "PNG, JPEG, GIF, BMP, TIFF or WebP"


class ImageError(ValueError):
    """The bytes are not an image this code can read."""


def is_digit_model(model) -> bool:
    """Whether ``model`` reads MNIST-style digits (and so gets :func:`mnist_preprocess`).

    1x28x28 input, and either ten classes named "0".."9" or MNIST recorded in
    its meta (``dataset``, or ``preprocess`` with ten classes, as ``clearconv
    train`` writes). The one test used by ``prepare`` (page, inspect) and by
    ``clearconv predict``.
    """
    meta = getattr(model, "meta", None) or {}
    digits = [str(i) for i in range(10)]
    return tuple(model.input_shape) == (1, 28, 28) and (
        list(model.class_names) == digits
        or meta.get("dataset") == "mnist"
        or (meta.get("preprocess") == "mnist" and len(model.class_names) == 10)
    )


def is_xo_model(model) -> bool:
    meta = getattr(model, "meta", None) or {}
    return meta.get("dataset") == "xo" or list(model.class_names) == ["X", "O"]


def decode_image(data: bytes, max_pixels: int = 16_000_000) -> np.ndarray:
    """Decode PNG/JPEG/... bytes to uint8 RGB ``(H, W, 3)``, transparency composited on white.

    Raises
    ------
    ImageError
        For bytes Pillow cannot read, or more than ``max_pixels`` pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(
                        f"image of {im.width}x{im.height} pixels is larger than {max_pixels}"
                    )
                rgba = ImageOps.exif_transpose(im).convert("RGBA")
                out = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                out.alpha_composite(rgba)
                return np.asarray(out.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refusing a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:  # its text names an internal BytesIO object
        raise ImageError(
            f"not a readable image (expected {IMAGE_FORMATS}; the data starts with {data[:8]!r})"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        detail = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc)).strip() or type(exc).__name__
        raise ImageError(f"damaged or incomplete image ({detail})") from exc


def _resize(rgb: np.ndarray, h: int, w: int, channels: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(rgb).convert("L" if channels == 1 else "RGB")
    if im.size != (w, h):
        im = im.resize((w, h), Image.Resampling.LANCZOS)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # -> (C, H, W)


def prepare(model, image: np.ndarray) -> np.ndarray:
    """The raw batch ``(1, *input_shape)`` for one picture.

    Parameters
    ----------
    model : clearconv.Model
    image : numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grey (0 black, 255 white), or
        float ``(H, W)`` in ``[0, 1]``.

    Raises
    ------
    ValueError
        When the model does not take images ``(C, H, W)`` with C in 1 or 3.
    """
    shape = tuple(model.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"this model takes input {shape}, not an image")
    c, h, w = shape
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an image (H, W) or (H, W, 3), got shape {img.shape}")
    if is_digit_model(model):
        return mnist_preprocess(img)[None, None]
    x = _resize(img, h, w, c)[None]
    if is_xo_model(model) and c == 1:
        f = x.astype(np.float32) / 255
        border = np.concatenate([f[0, 0, 0], f[0, 0, -1], f[0, 0, :, 0], f[0, 0, :, -1]])
        if np.median(border) > 0.5:  # dark ink on light paper
            f = 1 - f
        return np.where(f > 0.5, 1.0, -1.0).astype(np.float32)
    return x
