"""The Parquet predictions dataset of `catdog predict MODEL ROOT --out DIR`: a folder laid out as an
OUT (`catdog.store.layout`: index, manifest, errors, resume and incremental runs alike), whose rows
are a model's answers instead of features (docs/output-format.md).

  predictions/split=SPLIT/part-*.parquet   path, label, label_name (the class ROOT gives the image, if
                                          any), predicted, probability (of the predicted class),
                                          probabilities (one per class, in the model's class order)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catdog import storage
from catdog.storage import Location
from catdog.store import features
from catdog.store.layout import PREDICTIONS_DIR


def schema(metadata: dict, classes: list[str]) -> pa.Schema:
    """`metadata`: the feature metadata of the images' features, with the model's under "predictions"."""
    return pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.int64()),
            ("label_name", pa.string()),
            ("predicted", pa.string()),
            ("probability", pa.float32()),
            ("probabilities", pa.list_(pa.float32(), len(classes))),
        ],
        metadata={features.METADATA_KEY: json.dumps(metadata, sort_keys=True)},
    )


@dataclass(frozen=True)
class PredictionWriter(features.ShardWriter):
    """Commits a shard's predictions: the values it takes are each image's class probabilities."""

    model_classes: tuple[str, ...] = ()
    rows_dir = PREDICTIONS_DIR
    values_column = "probabilities"

    def columns(self, values: np.ndarray) -> list[pa.Array]:
        best = values.argmax(axis=1) if len(values) else np.zeros(0, dtype=np.int64)
        return [
            pa.array(np.asarray(self.model_classes, dtype=object)[best] if len(values) else [], pa.string()),
            pa.array(values[np.arange(len(values)), best], pa.float32()),
            pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), self.width),
        ]


@features.reading
def read(out: str | Location, split: str | None = None) -> pa.Table:
    """Every prediction a folder holds (those its index names), with its split, sorted by split and path."""
    data = features.dataset(out, PREDICTIONS_DIR)
    table = storage.read_dataset(data, filter_=None if split is None else pc.field("split") == split)
    return table.sort_by([("split", "ascending"), ("path", "ascending")])
