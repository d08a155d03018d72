"""Sound and text for the commands: FSDD, folders of WAV files, CSV sentences.

A sound model's file records how a recording became its input
(``meta["features"]``: :class:`~clearconv.data.audio.AudioFeatures` as JSON)
and a text model's file its vocabulary (``meta["vocab"]``: the tokens and
the sentence length), so ``predict``, ``evaluate`` and ``inspect`` read new
recordings and sentences exactly as training did. Everything here is a thin
client of :mod:`clearconv.data.audio`, :mod:`clearconv.data.fsdd` and
:mod:`clearconv.data.text`; user errors raise :class:`~clearconv.cli.CLIError`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.cli import CLIError
from clearconv.data.audio import AudioFeatures, fix_length, read_wav, resample
from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset
from clearconv.data.text import Vocab, read_text_csv, tokenize

#: Models that read the raw waveform; every other model reads log-mel spectrograms.
WAVEFORM_MODELS = ("audio1d",)
#: Kim (2014)'s initial word vectors: uniform in [-0.25, 0.25] (N(0, 1), PyTorch's
#: default, is four times wider and trains to a worse accuracy on rt-polarity).
EMBEDDING_INIT = 0.25


# -- what a model file records --------------------------------------------------
def model_features(model) -> AudioFeatures | None:
    """The model file's audio features, or None for a model that does not read sound."""
    d = (model.meta or {}).get("features")
    return AudioFeatures.from_dict(d) if isinstance(d, dict) else None


def model_vocab(model) -> Vocab | None:
    """The model file's vocabulary, or None for a model that does not read text."""
    d = (model.meta or {}).get("vocab")
    return Vocab.from_dict(d) if isinstance(d, dict) else None


def features_for(spec: str, base=None) -> AudioFeatures:
    """The features a model reads: a model file's own, else by zoo name (waveform or log-mel)."""
    if base is not None:
        feats = model_features(base)
        if feats is None:
            raise CLIError("the model file records no audio features: it was not trained on sound")
        return feats
    return AudioFeatures(kind="waveform" if spec in WAVEFORM_MODELS else "logmel")


def features_shape(feats: AudioFeatures) -> tuple[int, ...]:
    """One input's shape for ``feats``, e.g. ``(1, 40, 97)`` for the default log-mel."""
    return tuple(feats(np.zeros((1, feats.length), np.float32)).shape[1:])


# -- FSDD -------------------------------------------------------------------------
def load_fsdd_split(root: Path, split: str, feats: AudioFeatures) -> Dataset:
    """The FSDD ``split`` as model inputs; missing or bad files become one-line errors."""
    from clearconv.data.download import DataMissingError
    from clearconv.data.fsdd import load_fsdd

    try:
        return load_fsdd(root, split, feats)
    except (DataMissingError, DataError) as exc:
        raise CLIError(str(exc)) from exc


# -- folders of WAV files -----------------------------------------------------------
def is_wav_folder(root: Path) -> bool:
    """``root`` (or ``root/train``) holds class folders of ``.wav`` files."""
    folder = root / "train" if (root / "train").is_dir() else root
    return folder.is_dir() and any(folder.glob("*/*.wav"))


def load_wav_folder(
    root: Path, split: str, feats: AudioFeatures, class_names: list[str], skipped: list
) -> Dataset:
    """``root/split/CLASS/*.wav`` (or ``root/CLASS/*.wav``) as model inputs.

    Unreadable recordings are left out and ``(path, reason)`` appended to
    ``skipped``. The features are computed for all recordings at once.
    """
    folder = root / split if (root / split).is_dir() else root
    waves, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((folder / name).glob("*.wav")):
            try:
                samples, rate = read_wav(path)
                samples = resample(samples, rate, feats.rate)
            except (DataError, OSError) as exc:
                skipped.append((path, str(exc)))
                continue
            waves.append(fix_length(samples, feats.length))
            labels.append(label)
    if not waves:
        empty = np.zeros((0, *features_shape(feats)), np.float32)
        return Dataset(empty, np.zeros(0, np.int64), class_names)
    return Dataset(feats(np.stack(waves)), np.asarray(labels), class_names)


def read_recordings(files: list[Path], feats: AudioFeatures, skipped: list):
    """``(inputs, kept)`` of WAV files for a sound model; unreadable ones go to ``skipped``."""
    batch, kept = [], []
    for i, f in enumerate(files):
        try:
            batch.append(feats.from_file(f)[0])
        except (DataError, OSError) as exc:
            skipped.append((f, str(exc)))
            continue
        kept.append(i)
    if not batch:
        return np.zeros((0, *features_shape(feats)), np.float32), np.zeros(0, np.int64)
    return np.stack(batch), np.asarray(kept, np.int64)


# -- text ---------------------------------------------------------------------------
def is_text_data(path: Path) -> bool:
    """``--data`` names sentences: a ``.csv`` file, or a folder with ``train.csv``."""
    return path.suffix.lower() == ".csv" or (path / "train.csv").is_file()


def _dataset(texts: list[str], labels: list[str], vocab: Vocab, classes: list[str], where: str):
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise CLIError(f"{where}: labels the training data lacks: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    return Dataset(vocab.encode_texts(texts), np.array([index[lab] for lab in labels]), classes)


def load_text_data(path: Path, val_split: float, seed: int, min_count: int, max_len: int):
    """``(train, test, vocab, source)`` for ``--data`` with sentences.

    A folder gives ``train.csv`` and ``test.csv``; one CSV file gives a
    stratified, seeded hold-out of ``val_split`` as the test set (recorded in
    ``source`` so ``evaluate`` tests on the same sentences).
    """
    from clearconv.data import stratified_split

    try:
        if path.is_dir():
            texts, labels = read_text_csv(path / "train.csv")
            test_texts, test_labels = read_text_csv(path / "test.csv")
        else:
            texts, labels = read_text_csv(path)
            test_texts, test_labels = [], []
    except DataError as exc:
        raise CLIError(str(exc)) from exc
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise CLIError(f"{path}: one label ({classes[0]}); a classifier needs two or more")
    held_out = None
    if not path.is_dir():
        if val_split <= 0:
            raise CLIError(
                f"{path} is one CSV file: add --val-split (e.g. 0.1) to hold out a test set"
            )
        y = np.array([classes.index(lab) for lab in labels])
        tr, te = stratified_split(y, val_split, np.random.default_rng([seed, 2]))
        test_texts, test_labels = [texts[i] for i in te], [labels[i] for i in te]
        texts, labels = [texts[i] for i in tr], [labels[i] for i in tr]
        held_out = {"seed": seed, "fraction": val_split, "sentences": len(y)}
    vocab = Vocab.build((tokenize(t) for t in texts), min_count, max_len)
    train = _dataset(texts, labels, vocab, classes, str(path))
    test = _dataset(test_texts, test_labels, vocab, classes, str(path))
    source = {"dataset": "text", "data": str(path.resolve()), "held_out": held_out}
    return train, test, vocab, source


def text_eval_data(model, path: Path) -> Dataset:
    """The test sentences of ``path`` (the recorded hold-out for a single CSV file)."""
    from clearconv.data import stratified_split

    vocab = model_vocab(model)
    if vocab is None:
        raise CLIError(f"{path} holds sentences, but the model does not read text")
    try:
        texts, labels = read_text_csv(path / "test.csv" if path.is_dir() else path)
    except DataError as exc:
        raise CLIError(str(exc)) from exc
    held_out = (model.meta or {}).get("held_out")
    if not path.is_dir() and held_out and held_out.get("sentences") == len(texts):
        y = np.array([model.class_names.index(lab) if lab in model.class_names else -1
                      for lab in labels])  # fmt: skip
        rng = np.random.default_rng([int(held_out["seed"]), 2])
        te = stratified_split(y, float(held_out["fraction"]), rng)[1]
        texts, labels = [texts[i] for i in te], [labels[i] for i in te]
    return _dataset(texts, labels, vocab, list(model.class_names), str(path))


def init_embedding(net, rng: np.random.Generator, vocab: Vocab, embeddings: str | None) -> str:
    """Kim's initial word vectors in the net's Embedding, then pretrained ones where given.

    Returns a line saying how many words got pretrained vectors ('' without a file).
    """
    from clearconv.nn.sequence import Embedding

    emb = next((m for m in net.modules() if isinstance(m, Embedding)), None)
    if emb is None:
        raise CLIError("text data needs a model that starts with an Embedding (e.g. textcnn)")
    w = emb.weight.data
    w[...] = rng.uniform(-EMBEDDING_INIT, EMBEDDING_INIT, w.shape).astype(w.dtype)
    line = ""
    if embeddings is not None:
        found = read_embeddings(Path(embeddings), vocab, w)
        line = f"pretrained vectors for {found:,} of {len(vocab):,} words from {embeddings}"
    if emb.padding_idx is not None:
        w[emb.padding_idx] = 0
    return line


def read_embeddings(path: Path, vocab: Vocab, weight: np.ndarray) -> int:
    """Copy the vectors of ``path`` (lines ``word v1 v2 ...``) into the rows of ``weight``
    for the vocabulary's words; returns how many words were found.

    A first line of two integers (word2vec's text header) is skipped.
    """
    index = {t: i for i, t in enumerate(vocab.tokens)}
    dim, found = weight.shape[1], 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")
                if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue
                i = index.get(parts[0])
                if i is None:
                    continue
                if len(parts) - 1 != dim:
                    raise CLIError(
                        f"--embeddings {path}: line {n} has {len(parts) - 1} numbers, "
                        f"expected {dim} like its first vector"
                    )
                try:
                    weight[i] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    bad = f"--embeddings {path}: line {n} is not 'word v1 v2 ...'"
                    raise CLIError(bad) from None
                found += 1
    except OSError as exc:
        raise CLIError(f"--embeddings {path}: cannot read ({exc.strerror or exc})") from exc
    if found == 0:
        raise CLIError(f"--embeddings {path}: none of the vocabulary's words is in the file")
    return found


def embedding_dim(path: str) -> int:
    """The width of the vectors in an embeddings file (its first vector line)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip().split(" ")
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    return int(parts[1])  # word2vec's header: count, width
                if len(parts) > 1:
                    return len(parts) - 1
    except OSError as exc:
        raise CLIError(f"--embeddings {path}: cannot read ({exc.strerror or exc})") from exc
    raise CLIError(f"--embeddings {path}: no vectors (expected lines 'word v1 v2 ...')")


def text_inputs(model, texts: list[str]) -> np.ndarray:
    """``(N, max_len)`` token indices of ``texts`` with the model file's vocabulary."""
    vocab = model_vocab(model)
    if vocab is None:
        raise CLIError("--text needs a text model (one trained on sentences)")
    return vocab.encode_texts(texts)


def add_text_options(p: argparse.ArgumentParser) -> None:
    """``train``'s options for sentences."""
    p.add_argument(
        "--min-count", type=int, default=1, metavar="N",
        help="text: keep words seen at least N times in the training sentences, the others "
        "read as <unk> (default 1: on rt-polarity 78.5%% against 78.0%% with 2)",
    )  # fmt: skip
    p.add_argument(
        "--max-len", type=int, default=56, metavar="L",
        help="text: tokens per sentence, longer ones cut (default 56)",
    )  # fmt: skip
    p.add_argument(
        "--embeddings", metavar="FILE",
        help="text: pretrained word vectors, one 'word v1 v2 ...' a line (GloVe/word2vec text)",
    )  # fmt: skip


def meta_of(features: AudioFeatures | None = None, vocab: Vocab | None = None) -> dict[str, Any]:
    """What the model file records so new recordings and sentences are read the same way."""
    out: dict[str, Any] = {}
    if features is not None:
        out["features"] = features.to_dict()
    if vocab is not None:
        out["vocab"] = vocab.to_dict()
    return out
