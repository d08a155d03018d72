"""Sentences as model inputs: tokens, a vocabulary, and CSV files of ``text,label``.

A sentence is lower-cased and cut into words and punctuation marks
(``"It's great!" -> ["it's", "great", "!"]``); each token is looked up in a
vocabulary built from the training set (tokens seen at least ``min_count``
times; index 0 is ``<pad>``, 1 is ``<unk>`` for everything else), and the
sentence becomes a row of ``max_len`` indices, padded with 0 or cut. The
vocabulary is plain JSON, saved in the model file's header, so ``predict``
reads new text with the same one.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
#: Largest CSV read (bytes): a bigger file is refused before it is parsed.
MAX_CSV_BYTES = 256 << 20


def tokenize(text: str) -> list[str]:
    """Lower-case words (with their apostrophes) and single punctuation marks.

    Example
    -------
    >>> tokenize("It's a MASTER class -- 10/10!")
    ["it's", 'a', 'master', 'class', '-', '-', '10', '/', '10', '!']
    """
    return _TOKEN.findall(text.lower())


@dataclass
class Vocab:
    """Token <-> index, with ``<pad>`` at 0 and ``<unk>`` at 1.

    Example
    -------
    >>> v = Vocab.build([["a", "b", "a"], ["a", "c"]], min_count=2)
    >>> v.tokens, v.encode(["a", "zzz"], max_len=4).tolist()
    (['<pad>', '<unk>', 'a'], [2, 1, 0, 0])
    """

    tokens: list[str]
    max_len: int = 56
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"Vocab: the first tokens must be {PAD!r}, {UNK!r}")
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1,
              max_len: int = 56) -> Vocab:  # fmt: skip
        """The tokens seen at least ``min_count`` times, most frequent first."""
        counts = Counter(t for s in sentences for t in s)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))  # fmt: skip
        return cls([PAD, UNK, *kept], max_len)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> np.ndarray:
        """``(max_len,)`` int64 indices: unknown tokens -> 1, padding -> 0, long ones cut."""
        n = self.max_len if max_len is None else max_len
        ids = [self._index.get(t, 1) for t in tokens[:n]]
        return np.array(ids + [0] * (n - len(ids)), np.int64)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, max_len)`` indices of raw sentences."""
        if not texts:
            return np.zeros((0, self.max_len), np.int64)
        return np.stack([self.encode(tokenize(t)) for t in texts])

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "max_len": self.max_len}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        return cls(list(d["tokens"]), int(d["max_len"]))


def read_text_csv(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The ``text`` and ``label`` columns of a CSV file with a header row.

    Raises
    ------
    DataError
        Missing or unreadable file, no ``text``/``label`` columns, an empty
        text or label (row named), or no rows.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CSV_BYTES:
            raise DataError(f"{p}: larger than {MAX_CSV_BYTES >> 20} MB; not read")
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise DataError(f"{p}: no such file (expected a CSV with columns text,label)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p}: not a readable UTF-8 CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{p}: no rows (expected a header text,label and one row a sentence)")
    if "text" not in header or "label" not in header:
        raise DataError(f"{p}: expected columns text,label, got {','.join(map(str, header))}")
    for i, r in enumerate(rows, start=2):
        if not (r["text"] or "").strip() or not (r["label"] or "").strip():
            raise DataError(f"{p}: line {i} has an empty text or label")
    return [r["text"] for r in rows], [r["label"].strip() for r in rows]


def load_text_folder(folder: str | os.PathLike, min_count: int = 1, max_len: int = 56,
                     vocab: Vocab | None = None) -> tuple[Dataset, Dataset, Vocab]:  # fmt: skip
    """``FOLDER/train.csv`` and ``FOLDER/test.csv`` as ``(train, test, vocab)``.

    The vocabulary and the class names (sorted labels) come from the training
    file; a test label the training file lacks is an error.
    """
    root = Path(folder)
    texts, labels = read_text_csv(root / "train.csv")
    test_texts, test_labels = read_text_csv(root / "test.csv")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{root / 'train.csv'}: one label ({classes[0]}); need two or more")
    unknown = sorted(set(test_labels) - set(classes))
    if unknown:
        raise DataError(f"{root / 'test.csv'}: labels not in train.csv: {', '.join(unknown)}")
    v = vocab or Vocab.build((tokenize(t) for t in texts), min_count, max_len)
    index = {c: i for i, c in enumerate(classes)}

    def dataset(ts: list[str], ls: list[str]) -> Dataset:
        return Dataset(v.encode_texts(ts), np.array([index[lab] for lab in ls]), classes)

    return dataset(texts, labels), dataset(test_texts, test_labels), v
