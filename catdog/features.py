"""The Parquet feature dataset: its schema (a public contract), writing shards, reading back.

Layout under OUT:
  features/split=SPLIT/part-NNNNN-DIGEST.parquet   one file per shard, committed by rename
  errors/split=SPLIT/part-NNNNN-DIGEST.parquet     files that could not be decoded, if any
  manifest.json                                    the job's configuration and totals
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catdog import storage
from catdog.dataset import NO_LABEL
from catdog.errors import CatdogError

FEATURES_DIR = "features"
ERRORS_DIR = "errors"
METADATA_KEY = b"catdog"
COMPRESSION = "zstd"
ARROW_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
ERROR_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string()), ("message", pa.string())])


def feature_schema(dim: int, dtype: str, metadata: dict) -> pa.Schema:
    """Columns of every features file; `split` is the hive partition key (the folder name)."""
    return pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.int64()),
            ("label_name", pa.string()),
            ("features", pa.list_(ARROW_DTYPES[dtype], dim)),
        ],
        metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)},
    )


def shard_path(out: str, kind: str, split: str, name: str) -> str:
    return storage.join(out, kind, f"split={split}", name)


def write_shard(row: dict, *, out: str, schema: pa.Schema, classes: tuple[str, ...]) -> dict:
    """Ray Data stage: commit one shard's errors, then its features (the features file is the
    marker that the shard is done, so it goes last)."""
    fs, base = storage.resolve(out)
    split, name = row["split"], row["name"]
    if len(row["error_paths"]):
        errors = pa.table(
            [pa.array(list(row[k]), pa.string()) for k in ("error_paths", "error_types", "error_messages")],
            schema=ERROR_SCHEMA,
        )
        _commit_table(fs, base, shard_path(base, ERRORS_DIR, split, name), errors)
    storage_type = schema.field("features").type
    labels = np.asarray(row["labels"], dtype=np.int64)
    values = np.frombuffer(row["features"], dtype=storage_type.value_type.to_pandas_dtype())
    table = pa.table(
        [
            pa.array(list(row["paths"]), pa.string()),
            pa.array(labels, mask=labels == NO_LABEL),
            pa.array([None if y == NO_LABEL else classes[y] for y in labels], pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(values), storage_type.list_size),
        ],
        schema=schema,
    )
    _commit_table(fs, base, shard_path(base, FEATURES_DIR, split, name), table)
    return {"split": split, "name": name, "rows": table.num_rows, "errors": len(row["error_paths"]),
            "embedder": row["embedder"], "embedder_rss": row["embedder_rss"], "embedder_uss": row["embedder_uss"]}


def _commit_table(fs, out: str, final: str, table: pa.Table) -> None:
    storage.commit(
        fs,
        out,
        final,
        lambda tmp: pq.write_table(
            table, tmp, filesystem=fs, compression=COMPRESSION, use_dictionary=["label_name"]
        ),
    )


def committed(out: str, kind: str = FEATURES_DIR) -> set[tuple[str, str]]:
    """(split, file name) of every committed file of one kind."""
    fs, base = storage.resolve(out)
    root = storage.join(base, kind)
    if not storage.exists(fs, root):
        return set()
    found = set()
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = entry.path[len(root) :].lstrip("/").split("/")
        if entry.type == pafs.FileType.File and len(rel) == 2 and rel[0].startswith("split="):
            found.add((rel[0][len("split=") :], rel[1]))
    return found


def dataset(out: str, kind: str = FEATURES_DIR) -> pads.Dataset:
    fs, base = storage.resolve(out)
    root = storage.join(base, kind)
    if not storage.exists(fs, root):
        raise CatdogError(f"no {kind} under {out}: run `catdog extract` first")
    partitioning = pads.partitioning(pa.schema([("split", pa.string())]), flavor="hive")
    return pads.dataset(root, filesystem=fs, format="parquet", partitioning=partitioning)


@dataclass(frozen=True)
class Features:
    X: np.ndarray  # (n, dim) float32
    y: np.ndarray  # (n,) int64, NO_LABEL (-1) where unlabeled
    paths: np.ndarray  # (n,) str, relative to ROOT

    def __iter__(self):
        return iter((self.X, self.y, self.paths))


def load(out: str, split: str | None = None) -> Features:
    """Read features back into numpy without a per-row Python loop: `X, y, paths = load(OUT, "train")`."""
    data = dataset(out)
    filter_ = None if split is None else pads.field("split") == split
    table = data.to_table(columns=["path", "label", "features"], filter=filter_)
    if split is not None and table.num_rows == 0 and split not in splits(out):
        raise CatdogError(f"no split {split!r} in {out} (it has: {', '.join(splits(out)) or 'none'})")
    X, y = arrays(table)
    return Features(X, y, table.column("path").to_numpy(zero_copy_only=False))


def arrays(table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """The features and label columns as (n, dim) float32 and (n,) int64 arrays."""
    column = table.column("features")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    X = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    y = table.column("label").fill_null(NO_LABEL).to_numpy(zero_copy_only=False)
    return X, y.astype(np.int64, copy=False)


def stream(out: str, split: str, chunk_rows: int, seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) chunks of at most `chunk_rows` rows of one split, reading one file at a time.

    With a seed the file order and the rows inside each chunk are shuffled: shard files follow the
    sorted paths, so unshuffled chunks would hold one class at a time.
    """
    files = [f for f in dataset(out).get_fragments(filter=pads.field("split") == split)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files)) if seed is not None else range(len(files))
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    rows = 0
    for i in order:
        for batch in files[i].to_batches(columns=["label", "features"], batch_size=chunk_rows):
            pending.append(arrays(batch))
            rows += batch.num_rows
            while rows >= chunk_rows:
                X, y = np.concatenate([p[0] for p in pending]), np.concatenate([p[1] for p in pending])
                yield _shuffled(X[:chunk_rows], y[:chunk_rows], rng, seed)
                pending, rows = [(X[chunk_rows:], y[chunk_rows:])], len(X) - chunk_rows
    if rows:
        X, y = np.concatenate([p[0] for p in pending]), np.concatenate([p[1] for p in pending])
        yield _shuffled(X, y, rng, seed)


def _shuffled(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, seed: int | None):
    if seed is None:
        return X, y
    order = rng.permutation(len(y))
    return X[order], y[order]


def count_rows(out: str, split: str) -> int:
    return dataset(out).count_rows(filter=pads.field("split") == split)


def splits(out: str) -> list[str]:
    return sorted({split for split, _ in committed(out)})


def read_metadata(out: str) -> dict:
    """The feature metadata (model, weights, input size, preprocessing, dtype, ...) of a dataset."""
    data = dataset(out)
    if not data.files:
        raise CatdogError(f"no feature files under {out}")
    return json.loads(pq.read_schema(data.files[0], filesystem=data.filesystem).metadata[METADATA_KEY])
