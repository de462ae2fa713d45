"""The rows a head learns from and is judged on: the train / validation / test splits of OUT, held in
memory when they fit the budget, else streamed from Parquet.

A folder in the split layout brings its own splits. A folder in the class layout (ROOT/CLASS/*.jpg,
stored as one split, "all") has none: its rows are split here, stratified by class and seeded, as
Keras' `image_dataset_from_directory(validation_split=..., seed=...)` users expect (the fractions and
the seed are recorded in the model folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store import features

UNSPLIT = "all"  # the one split of a folder in the class layout
VALIDATION_SPLIT = 0.2  # defaults for a folder without splits
TEST_SPLIT = 0.2


@dataclass(frozen=True)
class Holdout:
    """How the rows of a folder without splits were divided."""

    validation_split: float
    test_split: float
    seed: int
    counts: dict[str, int]


def holdout_masks(labels: np.ndarray, validation: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Boolean masks over `labels` for train, validation and test: stratified by class, seeded."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    masks = {name: np.zeros(len(labels), bool) for name in ("train", "validation", "test")}
    try:
        rest, held = (rows, rows[:0]) if test == 0 else train_test_split(rows, test_size=test, stratify=labels,
                                                                        random_state=seed)
        train, val = (rest, rest[:0]) if validation == 0 else train_test_split(
            rest, test_size=validation / (1 - test), stratify=labels[rest], random_state=seed)
    except ValueError as exc:  # a class with too few images to have one in each part
        raise CatdogError(f"cannot hold out {validation:g} for validation and {test:g} for test, stratified by class "
                          f"({exc}); lower --validation-split/--test-split or add images") from None
    for name, chosen in (("train", train), ("validation", val), ("test", held)):
        masks[name][chosen] = True
    return masks


class FeatureSplits:
    """The splits of one OUT as the heads see them: `arrays`, `chunks`, `paths`, `labels`, `count`."""

    def __init__(self, out: Location, max_memory: int, validation_split: float | None = None,
                 test_split: float | None = None, seed: int = 0) -> None:
        self.out = out
        self.metadata = features.read_metadata(out)
        self.dim = int(self.metadata["feature_dim"])
        self.classes: list[str] = list(self.metadata.get("classes") or [])
        stored = features.splits(out)
        self._masks: dict[str, np.ndarray] = {}
        self.holdout: Holdout | None = None
        if stored == [UNSPLIT] and self.classes:
            validation = VALIDATION_SPLIT if validation_split is None else validation_split
            test = TEST_SPLIT if test_split is None else test_split
            self._masks = holdout_masks(features.read_labels(out, UNSPLIT), validation, test, seed)
            self.holdout = Holdout(validation, test, seed, {s: int(m.sum()) for s, m in self._masks.items()})
            self.splits = [s for s, m in self._masks.items() if m.any()]
        else:
            if (validation_split, test_split) != (None, None):
                raise CatdogError(f"{out} has its own splits ({', '.join(stored)}); --validation-split and "
                                  "--test-split divide a folder without them (ROOT/CLASS/*.jpg)")
            self.splits = stored
        rows = sum(self.count(s) for s in self.splits)
        row_bytes = self.dim * 4
        self.streaming = rows * row_bytes * 3 > max_memory  # the arrays, a scaled copy, slack
        self.chunk_rows = max(16, max_memory // (row_bytes * 4))
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _stored(self, split: str) -> tuple[str, np.ndarray | None]:
        return (UNSPLIT, self._masks[split]) if self._masks else (split, None)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._cache:
            stored, mask = self._stored(split)
            X, y, _ = features.load(self.out, stored)
            self._cache[split] = (X, y) if mask is None else (X[mask], y[mask])
        return self._cache[split]

    def chunks(self, split: str, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.streaming:
            stored, mask = self._stored(split)
            yield from features.stream(self.out, stored, self.chunk_rows, shuffle_seed, rows=mask)
        else:
            yield self.arrays(split)

    def paths(self, split: str) -> np.ndarray:
        """The image paths of a split, in the order of its rows."""
        stored, mask = self._stored(split)
        paths = features.read_paths(self.out, stored)
        return paths if mask is None else paths[mask]

    def labels(self, split: str) -> np.ndarray:
        stored, mask = self._stored(split)
        labels = features.read_labels(self.out, stored)
        return labels if mask is None else labels[mask]

    def count(self, split: str) -> int:
        stored, mask = self._stored(split)
        return int(mask.sum()) if mask is not None else features.count_rows(self.out, stored)
