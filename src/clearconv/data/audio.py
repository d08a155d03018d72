"""Sound as an image: WAV files, log-mel spectrograms and MFCCs, in NumPy.

A recording becomes an image when its frequencies (rows) are laid out over
time (columns): cut the samples into short overlapping frames, take each
frame's spectrum (a Fourier transform of the frame times a Hann window),
pool the spectrum's bins into mel bands (narrow at low pitches, wide at high
ones, as the ear hears them) and take the logarithm (loudness is heard in
decibels). A 2-D CNN then reads it as it reads a photo; a 1-D CNN can read
the raw samples instead, sliding along time.

WAV files are read with the standard library's :mod:`wave` (PCM only);
resampling to another rate uses SciPy (the ``audio`` extra)
when the rate differs. The mel filters follow librosa's defaults (Slaney's mel
scale and area normalisation), and a test checks them against librosa.
"""

from __future__ import annotations

import io
import math
import os
import wave
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clearconv.data.idx import DataError

#: Longest recording read (seconds): a 10-minute file is refused, not decoded.
MAX_SECONDS = 60.0


def read_wav(source: str | os.PathLike | bytes, *, max_seconds: float = MAX_SECONDS,
             name: str | None = None) -> tuple[np.ndarray, int]:  # fmt: skip
    """Read a mono PCM WAV file as float32 samples in ``[-1, 1]``, and its sample rate.

    Parameters
    ----------
    source : path or bytes
        The file, or its content.
    max_seconds : float
        Longer recordings are refused before their samples are read.
    name : str, optional
        What to call the file in messages (default: the path, or "the upload").

    Returns
    -------
    (samples, rate) : ``(L,)`` float32 array and int (samples per second)

    Raises
    ------
    DataError
        Not a RIFF/WAVE PCM file, not mono, a sample width other than 8, 16 or
        32 bits, no samples, longer than ``max_seconds``, or truncated.

    Example
    -------
    >>> import io, wave
    >>> buf = io.BytesIO()
    >>> with wave.open(buf, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    ...     w.writeframes(np.array([0, 16384, -32768], "<i2").tobytes())
    >>> read_wav(buf.getvalue())
    (array([ 0. ,  0.5, -1. ], dtype=float32), 8000)
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "the upload")
    if not isinstance(source, bytes):
        try:
            with open(source, "rb") as f:
                source = f.read(int(max_seconds * 4 * 192_000) + 4096)  # bounded read
        except OSError as exc:
            raise DataError(f"{label}: cannot read the file ({exc.strerror or exc})") from None
    try:
        with wave.open(io.BytesIO(source), "rb") as w:
            channels, width, rate, frames = (
                w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            )  # fmt: skip
            _check_header(label, channels, width, rate, frames, max_seconds)
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise DataError(
            f"{label}: not a PCM WAV file (expected a RIFF/WAVE header; {exc})"
        ) from None
    got = len(raw) // width
    if got < frames:
        raise DataError(
            f"{label}: truncated: the header says {frames} samples, the file holds {got}"
        )
    return _to_float(raw, width), rate


def _check_header(label: str, channels: int, width: int, rate: int, frames: int,
                  max_seconds: float) -> None:  # fmt: skip
    if channels != 1:
        raise DataError(f"{label}: {channels} channels; expected a mono recording")
    if width not in (1, 2, 4):
        raise DataError(f"{label}: {8 * width}-bit samples; expected 8-, 16- or 32-bit PCM")
    if rate <= 0:
        raise DataError(f"{label}: sample rate {rate}; expected a positive rate")
    if frames == 0:
        raise DataError(f"{label}: no samples (an empty recording)")
    if frames / rate > max_seconds:
        raise DataError(f"{label}: {frames / rate:.1f} s long; at most {max_seconds:g} s is read")


def _to_float(raw: bytes, width: int) -> np.ndarray:
    """PCM bytes -> float32 in [-1, 1] (8-bit WAV is unsigned, wider ones signed)."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / np.float32(128)
    kind = {2: "<i2", 4: "<i4"}[width]
    scale = np.float32(2.0 ** (8 * width - 1))
    return np.frombuffer(raw, kind).astype(np.float32) / scale


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` at ``rate`` samples/s resampled to ``target`` (polyphase filter, SciPy).

    Raises
    ------
    ImportError
        When the rates differ and SciPy is not installed.
    """
    if rate == target:
        return x
    try:
        from scipy.signal import resample_poly
    except ImportError as exc:
        from clearconv._extras import install_hint
        from clearconv.data.folder import MissingDependencyError

        raise MissingDependencyError(
            f"a {rate} Hz recording must be resampled to {target} Hz, which needs SciPy: "
            f"{install_hint('audio')}"
        ) from exc
    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def fix_length(x: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad the last axis to ``length`` samples, or keep its middle ``length``."""
    n = x.shape[-1]
    if n >= length:
        start = (n - length) // 2
        return x[..., start : start + length]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - n)]
    return np.pad(x, pad)


# -- spectrograms -------------------------------------------------------------------
def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, np.float64)
    lin = f * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)


def mel_filters(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                fmax: float | None = None) -> np.ndarray:  # fmt: skip
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``, each of unit area (Slaney).

    Filter ``m`` rises from band edge ``m`` to ``m + 1`` and falls to ``m + 2``,
    edges evenly spaced in mels between ``fmin`` and ``fmax`` (default rate / 2).
    """
    fmax = rate / 2.0 if fmax is None else fmax
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]  # (n_mels + 2, bins)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def power_spectrogram(x: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|FFT(frame * hann)|^2`` of every frame: ``(..., L) -> (..., n_fft // 2 + 1, T)``.

    ``T = (L - n_fft) // hop_length + 1`` frames (no padding at the ends).
    """
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop_length, :]
    spectrum = np.fft.rfft(frames * window.astype(x.dtype), axis=-1)  # (..., T, bins)
    return np.swapaxes(spectrum.real**2 + spectrum.imag**2, -1, -2)


def log_mel_spectrogram(x: np.ndarray, rate: int, n_fft: int = 256, hop_length: int = 80,
                        n_mels: int = 40, top_db: float | None = 80.0) -> np.ndarray:  # fmt: skip
    """Log-mel spectrogram in decibels: ``10 log10(max(mel @ |STFT|^2, 1e-10))``.

    Parameters
    ----------
    x : ``(..., L)`` float array of samples
    rate : int
        Samples per second.
    n_fft, hop_length : int
        Frame length and step, in samples (32 ms and 10 ms at 8 kHz).
    n_mels : int
        Mel bands (rows of the image).
    top_db : float or None
        Floor each spectrogram at its maximum minus ``top_db`` (librosa's
        ``power_to_db``), so silence does not dominate.

    Returns
    -------
    ``(..., n_mels, T)`` float32, ``T = (L - n_fft) // hop_length + 1``.

    Example
    -------
    >>> tone = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    >>> s = log_mel_spectrogram(tone, 8000)
    >>> s.shape, int(s.mean(axis=1).argmax())  # band 16 peaks at 972 Hz, nearest 1 kHz
    ((40, 97), 16)
    """
    power = power_spectrogram(x.astype(np.float32), n_fft, hop_length)
    mel = mel_filters(rate, n_fft, n_mels).astype(np.float32) @ power
    db = 10.0 * np.log10(np.maximum(mel, np.float32(1e-10)))
    if top_db is not None:
        peak = db.max(axis=(-2, -1), keepdims=True)
        db = np.maximum(db, peak - np.float32(top_db))
    return db.astype(np.float32)


def mfcc(x: np.ndarray, rate: int, n_mfcc: int = 13, **kwargs: Any) -> np.ndarray:
    """Mel-frequency cepstral coefficients: the orthonormal DCT-II of the log-mel rows.

    ``c_k = s_k * sum_m S_m cos(pi k (2m + 1) / (2M))`` with ``s_0 = sqrt(1/M)``
    and ``s_k = sqrt(2/M)``; the first ``n_mfcc`` coefficients, ``(..., n_mfcc, T)``.
    """
    db = log_mel_spectrogram(x, rate, **kwargs)
    m = db.shape[-2]
    k, j = np.arange(n_mfcc)[:, None], np.arange(m)[None, :]
    dct = np.cos(np.pi * k * (2 * j + 1) / (2 * m)) * np.sqrt(2.0 / m)
    dct[0] /= np.sqrt(2.0)
    return (dct.astype(np.float32) @ db).astype(np.float32)


@dataclass(frozen=True)
class AudioFeatures:
    """How a recording becomes a model's input; saved in the model file so that
    ``predict`` turns a new recording into the same kind of image.

    ``kind`` is ``"logmel"`` (``(1, n_mels, T)``), ``"mfcc"`` (``(1, n_mfcc, T)``)
    or ``"waveform"`` (``(1, length)``); every recording is first resampled to
    ``rate`` and cut or zero-padded to ``length`` samples. ``standardize``
    shifts and scales each recording's input to mean 0 and standard deviation 1
    (the waveform, or all of the spectrogram): how loud a speaker was, or how
    near the microphone, says nothing about the word.
    """

    kind: str = "logmel"
    rate: int = 8000
    length: int = 8000
    n_fft: int = 256
    hop_length: int = 80
    n_mels: int = 40
    n_mfcc: int = 13
    standardize: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "mfcc", "waveform"):
            raise ValueError(
                f"AudioFeatures: kind must be 'logmel', 'mfcc' or 'waveform', got {self.kind!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioFeatures:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        """``(N, length)`` samples at ``rate`` -> ``(N, 1, rows, T)`` or ``(N, 1, length)``."""
        x = fix_length(np.asarray(waves, np.float32), self.length)
        opts = dict(n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels)
        if self.kind == "waveform":
            out = x[:, None, :]
        elif self.kind == "mfcc":
            out = mfcc(x, self.rate, self.n_mfcc, **opts)[:, None]
        else:
            out = log_mel_spectrogram(x, self.rate, **opts)[:, None]
        if not self.standardize:
            return out
        axes = tuple(range(1, out.ndim))  # each recording on its own
        mean = out.mean(axis=axes, keepdims=True)
        std = out.std(axis=axes, keepdims=True)
        return ((out - mean) / np.maximum(std, np.float32(1e-5))).astype(np.float32)

    def from_file(self, source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
        """One WAV file -> a ``(1, *input_shape)`` batch."""
        samples, rate = read_wav(source, name=name)
        return self(resample(samples, rate, self.rate)[None])
