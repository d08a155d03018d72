"""The Free Spoken Digit Dataset: 3,000 recordings of the digits 0-9, 8 kHz mono WAV.

Files are named ``{digit}_{speaker}_{index}.wav``; the official split puts
indices 0-4 in the test set (300 recordings) and 5-49 in the training set
(2,700). ``ROOT/fsdd/`` holds either the repository's ``recordings.tar.gz``
(read as it is) or the unpacked ``recordings/*.wav``.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clearconv.data.audio import AudioFeatures, fix_length, read_wav, resample
from clearconv.data.download import DataMissingError, resolve_root
from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset

FSDD_CLASSES = [str(d) for d in range(10)]
_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")
_SUBDIR = "fsdd"
#: The first index of the training recordings (0-4 are the test set).
TEST_INDICES = 5


def _members(folder: Path) -> Iterator[tuple[str, bytes]]:
    """``(file name, bytes)`` of every recording under ``folder`` (tarball or WAVs)."""
    tarball = folder / "recordings.tar.gz"
    wavs = sorted(folder.glob("recordings/*.wav")) or sorted(folder.glob("*.wav"))
    if wavs:
        for path in wavs:
            yield path.name, path.read_bytes()
        return
    if not tarball.is_file():
        raise DataMissingError(
            f"FSDD not found: put recordings.tar.gz (or the unpacked recordings/*.wav) from the "
            f"Free Spoken Digit Dataset repository into {folder}/ (or point --data-dir / "
            f"CLEARCONV_DATA at a folder holding fsdd/)"
        )
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".wav"):
                    f = tar.extractfile(member)
                    if f is not None:
                        yield os.path.basename(member.name), f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{tarball}: not a readable .tar.gz ({exc})") from None


def load_fsdd(root: str | os.PathLike | None = None, split: str = "train",
              features: AudioFeatures | None = None) -> Dataset:  # fmt: skip
    """Load the FSDD ``split`` (``"train"`` or ``"test"``) as model inputs.

    Parameters
    ----------
    root : path, optional
        Data root holding ``fsdd/`` (default ``$CLEARCONV_DATA`` or ``~/.cache/clearconv``).
    split : "train" or "test"
        The official split (indices 5-49 / 0-4).
    features : AudioFeatures, optional
        How each recording becomes an input (default: 40-band log-mel of 1 s at 8 kHz).

    Returns
    -------
    Dataset
        ``images`` ``(N, 1, rows, T)`` (or ``(N, 1, length)`` for waveforms),
        float32; labels the digits; class names ``"0"``..``"9"``.

    Raises
    ------
    DataMissingError
        When neither the tarball nor the WAV files are there.
    DataError
        For an unreadable recording (named) or a file name not in FSDD's pattern.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_fsdd: split must be 'train' or 'test', got {split!r}")
    feats = features or AudioFeatures()
    folder = resolve_root(root) / _SUBDIR
    waves, labels = [], []
    for name, data in _members(folder):
        m = _NAME.match(name)
        if m is None:
            raise DataError(f"{folder}/{name}: expected FSDD names like 7_jackson_12.wav")
        if (int(m.group(3)) < TEST_INDICES) != (split == "test"):
            continue
        samples, rate = read_wav(data, name=f"{folder}/{name}")
        waves.append(fix_length(resample(samples, rate, feats.rate), feats.length))
        labels.append(int(m.group(1)))
    if not waves:
        raise DataError(f"{folder}: no FSDD recordings of the {split} split")
    x = feats(np.stack(waves))
    return Dataset(x, np.asarray(labels), FSDD_CLASSES)
