"""A data set as three arrays, seeded mini-batches and a train/validation split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from clearconv._validate import check_float, check_int, check_rng

__all__ = ["Dataset", "iterate_batches", "stratified_split", "train_val_split"]


@dataclass(frozen=True)
class Dataset:
    """Images, integer labels and class names; unpacks as a 3-tuple.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` for MNIST-style grey sets, ``(N, C, H, W)`` otherwise;
        uint8 for files read from disk, float32 for generated sets.
    labels : numpy.ndarray
        ``(N,)`` int64 in ``[0, len(class_names))``.
    class_names : list of str

    Example
    -------
    >>> ds = Dataset(np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0, 1]), ["a", "b"])
    >>> images, labels, names = ds
    >>> len(ds), ds[np.array([1, 3])].labels.tolist()
    (4, [1, 1])
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"Dataset: images and labels must have the same length, "
                f"got {len(self.images)} and {len(self.labels)}"
            )
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator:
        return iter((self.images, self.labels, self.class_names))

    def __getitem__(self, index) -> Dataset:
        """The subset at ``index`` (an index array, mask or slice)."""
        return Dataset(self.images[index], self.labels[index], self.class_names)


def iterate_batches(
    n: int,
    batch_size: int,
    rng: np.random.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Yield index arrays that cover ``range(n)`` in batches.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
    rng : numpy.random.Generator, optional
        Shuffles the order (one permutation per call); required for a
        reproducible order when ``shuffle``.
    shuffle : bool
        Permute the indices; otherwise ``0, 1, ..., n - 1``.
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Yields
    ------
    numpy.ndarray
        int64 indices, ``(batch_size,)`` (the last may be shorter).

    Example
    -------
    >>> [b.tolist() for b in iterate_batches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    n = check_int("iterate_batches", "n", n, minimum=0)
    batch_size = check_int("iterate_batches", "batch_size", batch_size, minimum=1)
    if shuffle:
        order = check_rng("iterate_batches", rng).permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def train_val_split(
    n: int, fraction: float, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` at random into training and validation indices.

    Parameters
    ----------
    n : int
    fraction : float
        Share of the samples for validation, in ``[0, 1)``; the count is
        ``round(n * fraction)``.
    rng : numpy.random.Generator, optional

    Returns
    -------
    (train_idx, val_idx) : two sorted int64 arrays
        Disjoint, together ``range(n)``.

    Example
    -------
    >>> tr, va = train_val_split(10, 0.2, np.random.default_rng(0))
    >>> len(tr), len(va), sorted(tr.tolist() + va.tolist()) == list(range(10))
    (8, 2, True)
    """
    n = check_int("train_val_split", "n", n, minimum=0)
    fraction = check_float("train_val_split", "fraction", fraction, 0.0, 1.0, open_max=True)
    order = check_rng("train_val_split", rng).permutation(n)
    n_val = round(n * fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` so that each class keeps its share in both parts.

    ``round(n * fraction)`` samples go to the second part, shared out among
    the classes in proportion to their sizes (largest remainders first), each
    class's picks drawn at random: a class of 40 among 80 gives 8 of 16.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` integer class labels.
    fraction : float
        Share of the samples for the second (validation or test) part, in ``[0, 1)``.
    rng : numpy.random.Generator, optional

    Returns
    -------
    (train_idx, held_idx) : two sorted int64 arrays
        Disjoint, together ``range(N)``.

    Example
    -------
    >>> labels = np.array([0] * 6 + [1] * 4)
    >>> tr, te = stratified_split(labels, 0.5, np.random.default_rng(0))
    >>> np.bincount(labels[te]).tolist(), len(tr)
    ([3, 2], 5)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise TypeError(
            f"stratified_split: labels must be a 1-D integer array, got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    fraction = check_float("stratified_split", "fraction", fraction, 0.0, 1.0, open_max=True)
    rng = check_rng("stratified_split", rng)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * fraction
    take = np.floor(quota).astype(np.int64)
    extra = round(len(labels) * fraction) - int(take.sum())
    # the classes with the largest remainders get the samples rounding left over
    take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    held = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]  # one loop over classes, not samples
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx.astype(np.int64)
