"""The per-epoch record of a training run, written as ``.csv`` or ``.json``."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch records of a training run.

    Each record has ``epoch`` (1-based), ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc`` (``None`` without validation data), ``lr`` (the
    rate of the epoch's first step), ``lr_min`` and ``lr_max`` (the range of
    rates its steps used: equal to ``lr`` unless the schedule steps per batch)
    and ``seconds``.

    Attributes
    ----------
    records : list of dict
    best_epoch : int or None
        The epoch whose weights early stopping restored.
    stopped_early : bool
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    COLUMNS = (
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "lr_min", "lr_max",
        "seconds",
    )  # fmt: skip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[Any]:
        """One column, e.g. ``history["val_acc"]``."""
        if key not in self.COLUMNS:
            raise KeyError(f"History has columns {', '.join(self.COLUMNS)}, not {key!r}")
        return [r.get(key) for r in self.records]

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the records as ``.csv`` (one row per epoch) or ``.json``, atomically.

        Raises
        ------
        ValueError
            For another suffix.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".json"):
            raise ValueError(f"history file must end in .csv or .json, got {path.name!r}")
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if suffix == ".json":
                json.dump(self.to_dict(), f, indent=1)
            else:
                writer = csv.DictWriter(f, fieldnames=list(self.COLUMNS))
                writer.writeheader()
                for r in self.records:
                    writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in self.COLUMNS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
