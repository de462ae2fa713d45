"""The vectors `similar` and `audit` look at: catdog's own OUT, or embeddings another tool wrote to
Parquet (clip-retrieval's `img_emb` folders, a Ray Data job's output) — a column of vectors (a list or
fixed-size list of floats), a column of image paths or URIs, and optionally a class and a split
column. Classes are numbered as catdog numbers them: integer labels in numeric order, names sorted."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from catdog import storage
from catdog.errors import CatdogError
from catdog.store import features, manifest
from catdog.store.features import NO_LABEL, Features

BATCH_ROWS = 16_384  # read at once, one batch ahead: 32 MiB of 512-float vectors


def load(config) -> Features:
    """The features `config` names (a SimilarConfig or an AuditConfig): every row, with its split."""
    source = storage.resolve(config.features)
    if config.features_column is None:
        manifest.require_complete(source)
        if not features.splits(source):
            raise CatdogError(f"no features under {source}: run `catdog extract` first")
        return features.load(source)
    return foreign(source, config.features_column, config.path_column, config.label_column, config.split_column)


NAMED = 5  # rows named in a note; the rest are counted


def usable(data: Features, source: storage.Location, what: str) -> tuple[Features, str | None]:
    """The rows whose vectors are finite, and a note counting and naming those left out: a NaN or an
    infinity has no cosine with anything, and a head cannot be fitted on it. Fewer than two rows
    left is one line: there is nothing to compare."""
    finite = np.isfinite(data.X).all(axis=1)
    note = None
    if not finite.all():
        note = left_out_note(data.paths[~finite])
        data = Features(data.X[finite], data.y[finite], data.paths[finite], data.splits[finite], data.classes, data.metadata)
    if len(data) < 2:
        raise CatdogError(f"{what} needs at least two images with finite vectors; {source} has {len(data)}")
    return data, note


def left_out_note(bad) -> str:
    """The note that counts and names the rows left out for NaN or infinite values."""
    named = ", ".join(map(str, bad[:NAMED])) + (f" and {len(bad) - NAMED:,} more" if len(bad) > NAMED else "")
    return f"{len(bad):,} images left out: their vectors hold NaN or infinite values ({named})"


def foreign(source: storage.Location, features_column: str, path_column: str = "path", label_column: str | None = None,
            split_column: str | None = None) -> Features:
    """A Parquet file or folder of embeddings written by another tool. `label_column`/`split_column`
    None: "label"/"split" if it has them. Read a batch at a time into one float32 array: the file's
    own copy is never held whole (a million 512-float rows are 2 GiB)."""
    if source.kind() == pafs.FileType.NotFound:
        raise CatdogError(f"not found: {source}")
    X, others = None, []
    try:
        # Without pre-buffering, the reader holds a batch, not a row group's whole column chunks ahead.
        unbuffered = pads.ParquetFileFormat(default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False))
        data = pads.dataset(source.path, filesystem=source.fs, format=unbuffered)
        names = data.schema.names
        label_column = label_column or ("label" if "label" in names else None)
        split_column = split_column or ("split" if "split" in names else None)
        for column in (features_column, path_column, label_column, split_column):
            if column and column not in names:
                raise CatdogError(f"no column {column!r} in {source} (it has: {', '.join(names)})")
        rows, start = data.count_rows(), 0
        kept = [c for c in (path_column, label_column, split_column) if c]
        for batch in data.to_batches(columns=[features_column, *kept], batch_size=BATCH_ROWS, batch_readahead=1,
                                     fragment_readahead=1):
            if not batch.num_rows:
                continue
            batch_vectors = vectors(batch.column(features_column), features_column, source)
            if X is None:
                X = np.empty((rows, batch_vectors.shape[1]), np.float32)
            elif batch_vectors.shape[1] != X.shape[1]:
                raise CatdogError(f"column {features_column!r} of {source} holds vectors of different lengths")
            X[start : start + len(batch_vectors)] = batch_vectors
            start += len(batch_vectors)
            others.append(batch.select(kept))
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {source}: {' '.join(str(exc).split())[:300]}") from None
    if X is None:
        raise CatdogError(f"no rows in {source}")
    table = pa.Table.from_batches(others)
    splits = (table.column(split_column).cast(pa.string()).fill_null("all").to_numpy(zero_copy_only=False)
              if split_column else np.full(len(X), "all", dtype=object))
    y, classes = labels(table.column(label_column)) if label_column else (np.full(len(X), NO_LABEL), ())
    paths = table.column(path_column).cast(pa.string()).to_numpy(zero_copy_only=False)
    return Features(X, y, paths, splits, classes, {"source": str(source), "features_column": features_column})


def vectors(column: pa.Array, name: str, source) -> np.ndarray:
    """One batch's vectors as a (rows, dim) float32 array."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):
        raise CatdogError(f"column {name!r} of {source} holds {column.type}, not vectors (a list of floats)")
    if column.null_count:
        raise CatdogError(f"column {name!r} of {source} has rows without a vector")
    lengths = pc.list_value_length(column)
    dim = pc.min(lengths).as_py()
    if dim != pc.max(lengths).as_py() or not dim:
        raise CatdogError(f"column {name!r} of {source} holds vectors of different lengths")
    return np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(column), dim)


def labels(column: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    values = [None if v is None or str(v) == "" else v for v in column.to_pylist()]
    present = {v for v in values if v is not None}
    order = sorted(present) if pa.types.is_integer(column.type) else sorted(map(str, present))
    number = {str(v): i for i, v in enumerate(order)}
    return (np.array([NO_LABEL if v is None else number[str(v)] for v in values], dtype=np.int64),
            tuple(str(v) for v in order))
