"""The Parquet feature dataset: its schema and metadata (a public contract, docs/output-format.md),
writing shards, reading them back. OUT's file names are `catdog.store.layout`'s."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catdog import storage
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store.files import commit, read_parquet
from catdog.store.layout import ERRORS_DIR, FEATURES_DIR, INDEX, shard_file

NO_LABEL = -1  # scikit-learn's "unlabeled"; Parquet stores it as null
METADATA_KEY = b"catdog"
WRITTEN_BY_KEY = b"catdog_written_by"  # per file: the Ray node that wrote it (not part of the schema contract)
COMPRESSION = "zstd"
ARROW_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
ERROR_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string()), ("message", pa.string())])


def feature_schema(metadata: dict) -> pa.Schema:
    """Columns of every features file; `split` is the hive partition key (the folder name)."""
    return pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.int64()),
            ("label_name", pa.string()),
            ("features", pa.list_(ARROW_DTYPES[metadata["dtype"]], metadata["feature_dim"])),
        ],
        metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)},
    )


def shard_path(out: Location, kind: str, split: str, name: str) -> str:
    return storage.join(out.path, shard_file(kind, split, name))


@dataclass(frozen=True)
class ShardWriter:
    """Commits one shard's files under OUT: its errors, then its rows (the rows file is the marker
    that the shard is done, so it goes last). The rows are features (`features/`); a subclass writes
    other rows of the same shape (`catdog.store.predictions`)."""

    out: Location
    schema: pa.Schema
    classes: tuple[str, ...]
    rows_dir = FEATURES_DIR
    values_column = "features"  # the schema's fixed-size list column of each image's values

    @property
    def width(self) -> int:
        """Values per image the writer takes (the feature dimension)."""
        return self.schema.field(self.values_column).type.list_size

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.schema.field(self.values_column).type.value_type.to_pandas_dtype())

    def write(self, split: str, name: str, paths: list[str], labels: np.ndarray, values: np.ndarray,
              errors: list[tuple[str, str, str]], written_by: str = "") -> int:
        """`values` is (n, width) in `dtype`; `errors` holds (path, error, message) rows."""
        if errors:
            table = pa.table([pa.array(list(column), pa.string()) for column in zip(*errors)], schema=ERROR_SCHEMA)
            self._commit(shard_path(self.out, ERRORS_DIR, split, name), table)
        labels = np.asarray(labels, dtype=np.int64)
        given = [pa.array(paths, pa.string()), pa.array(labels, mask=labels == NO_LABEL),
                 pa.array([None if y == NO_LABEL else self.classes[y] for y in labels], pa.string())]
        table = pa.table(given + self.columns(values), schema=self.schema)
        table = table.replace_schema_metadata({**self.schema.metadata, WRITTEN_BY_KEY: written_by})
        self._commit(shard_path(self.out, self.rows_dir, split, name), table)
        return table.num_rows

    def columns(self, values: np.ndarray) -> list[pa.Array]:
        """The columns after path, label and label_name."""
        return [pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), self.width)]

    def _commit(self, final: str, table: pa.Table) -> None:
        commit(self.out, final, lambda tmp: pq.write_table(
            table, tmp, filesystem=self.out.fs, compression=COMPRESSION, use_dictionary=["label_name", "predicted"]))


def committed(out: str | Location, kind: str = FEATURES_DIR) -> set[tuple[str, str]]:
    """(split, file name) of every committed file of one kind."""
    root = storage.resolve(out).join(kind)
    if not root.exists():
        return set()
    found = set()
    for entry in root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True)):
        rel = entry.path[len(root.path) :].lstrip("/").split("/")
        if entry.type == pafs.FileType.File and len(rel) == 2 and rel[0].startswith("split="):
            found.add((rel[0][len("split=") :], rel[1]))
    return found


def dataset(out: str | Location, kind: str = FEATURES_DIR) -> pads.Dataset:
    """The committed files of one kind as a pyarrow dataset: those OUT's index names (so a commit
    under way is never half seen: docs/output-format.md), or without an index (a first run, features
    written by another tool) those in the folder."""
    out = storage.resolve(out)
    root = out.join(kind)
    if not root.exists():
        raise CatdogError(f"no {kind} under {out}: run `catdog extract` first")
    partitioning = pads.partitioning(pa.schema([("split", pa.string())]), flavor="hive")
    files = indexed_files(out, kind)
    if not files:
        return pads.dataset(root.path, filesystem=root.fs, format="parquet", partitioning=partitioning)
    return pads.dataset([storage.join(out.path, f) for f in files], filesystem=out.fs, format="parquet",
                        partitioning=partitioning, partition_base_dir=root.path)


def indexed_files(out: Location, kind: str) -> list[str]:
    """The files of one kind (relative to OUT) that OUT's index names, sorted; none without an index."""
    index = out.join(INDEX)
    if not index.exists():
        return []
    named = pc.unique(read_parquet(index, columns=["file"]).column("file")).to_pylist()
    return sorted(f for f in named if f.startswith(f"{kind}/"))


def reading(fn):
    """A reader of OUT: a file a commit replaced after the index was read is read again from the new
    index (once); a small read broken by throttling is read again (`storage.small_reads_retried`); a
    damaged file is one line naming it."""
    @functools.wraps(fn)
    def read(out, *args, **kwargs):
        object_store = storage.resolve(out, check=False).is_object_store
        for attempt in (1, 2):
            try:
                return storage.small_reads_retried(lambda: fn(out, *args, **kwargs), object_store)
            except FileNotFoundError as exc:
                if attempt == 2:
                    raise CatdogError(f"cannot read {out}: a file its index names is missing ({exc}); its images are "
                                      f"extracted again by `catdog extract ROOT --out {out} --repair`") from None
            except (OSError, pa.ArrowException) as exc:
                raise CatdogError(f"cannot read {out}: {' '.join(str(exc).split())[:400]}; a damaged file is "
                                  f"extracted again by `catdog extract ROOT --out {out} --repair`") from None
    return read


@dataclass(frozen=True)
class Features:
    """Stored features read back: `X, y, paths = catdog.load(OUT, "train")`."""

    X: np.ndarray  # (n, dim) float32
    y: np.ndarray  # (n,) int64 class indices into `classes`, NO_LABEL (-1) where unlabeled
    paths: np.ndarray  # (n,) str, relative to ROOT
    splits: np.ndarray | None = None  # (n,) str: each row's split
    classes: tuple[str, ...] = ()  # class names, numbered from 0 as Keras numbers them
    metadata: dict | None = None  # how the features were made (docs/output-format.md)

    def __iter__(self):
        return iter((self.X, self.y, self.paths))

    def __len__(self) -> int:
        return len(self.y)


@reading
def load(out: str | Location, split: str | None = None) -> Features:
    """Read features back into numpy without a per-row Python loop: `X, y, paths = load(OUT, "train")`."""
    out = storage.resolve(out)
    data = dataset(out)
    filter_ = None if split is None else pads.field("split") == split
    table = storage.read_dataset(data, ["path", "label", "features", "split"], filter_)
    if split is not None and table.num_rows == 0 and split not in splits(out):
        raise CatdogError(f"no split {split!r} in {out} (it has: {', '.join(splits(out)) or 'none'})")
    X, y = arrays(table)
    meta = _metadata(table.schema)  # the dataset's schema is its first file's, footer metadata included
    return Features(X, y, table.column("path").to_numpy(zero_copy_only=False),
                    table.column("split").to_numpy(zero_copy_only=False), tuple(meta.get("classes") or ()), meta)


@reading
def read_errors(out: str | Location) -> list[tuple[str, str, str]]:
    """(path, error, message) of every image that could not be read, in path order."""
    if not committed(out, ERRORS_DIR):
        return []
    table = storage.read_dataset(dataset(out, ERRORS_DIR), ["path", "error", "message"]).sort_by("path")
    return list(zip(*(table.column(c).to_pylist() for c in ("path", "error", "message"))))


def read_paths(out: str | Location, split: str) -> np.ndarray:
    """The image paths of one split, in the order `load` and `stream` (unshuffled) give the rows."""
    return _column(out, split, "path").to_numpy(zero_copy_only=False)


def read_labels(out: str | Location, split: str) -> np.ndarray:
    """The labels of one split (NO_LABEL where unlabeled), without reading the features."""
    return _column(out, split, "label").fill_null(NO_LABEL).to_numpy(zero_copy_only=False).astype(np.int64)


@reading
def _column(out: str | Location, split: str, name: str) -> pa.ChunkedArray:
    return storage.read_dataset(dataset(out), [name], pads.field("split") == split).column(name)


def arrays(table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """The features and label columns as (n, dim) float32 and (n,) int64 arrays."""
    column = table.column("features")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    X = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    y = table.column("label").fill_null(NO_LABEL).to_numpy(zero_copy_only=False)
    return X, y.astype(np.int64, copy=False)


def stream(out: str | Location, split: str, chunk_rows: int, seed: int | None = None,
           rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) chunks of at most `chunk_rows` rows of one split, reading one file at a time.

    With a seed the file order and the rows inside each chunk are shuffled: shard files follow the
    sorted paths, so unshuffled chunks would hold one class at a time. `rows`, a boolean mask over
    the split's rows in `load`'s order, keeps only some of them, whatever order the files are read in.
    """
    files = _fragments(out, split)
    object_store = storage.resolve(out, check=False).is_object_store
    starts = np.cumsum([0] + [f.count_rows() for f in files]) if rows is not None else None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files)) if seed is not None else range(len(files))
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    held = 0
    for i in order:
        offset = 0 if rows is None else int(starts[i])
        # A row group at a time (a shard is one): a read broken by throttling is read again.
        groups = files[i].split_by_row_group()
        tables = (storage.small_reads_retried(lambda g=g: g.to_table(columns=["label", "features"]), object_store)
                  for g in groups)
        for batch in (b for table in tables for b in table.to_batches(max_chunksize=chunk_rows)):
            X, y = arrays(batch)
            if rows is not None:
                keep = rows[offset : offset + len(y)]
                offset += len(y)
                X, y = X[keep], y[keep]
            pending.append((X, y))
            held += len(y)
            while held >= chunk_rows:
                X, y = np.concatenate([p[0] for p in pending]), np.concatenate([p[1] for p in pending])
                yield _shuffled(X[:chunk_rows], y[:chunk_rows], rng, seed)
                pending, held = [(X[chunk_rows:], y[chunk_rows:])], len(X) - chunk_rows
    if held:
        X, y = np.concatenate([p[0] for p in pending]), np.concatenate([p[1] for p in pending])
        yield _shuffled(X, y, rng, seed)


@reading
def _fragments(out: str | Location, split: str) -> list:
    return list(dataset(out).get_fragments(filter=pads.field("split") == split))


@reading
def count(out: str | Location, kind: str = FEATURES_DIR) -> int:
    """Rows of one kind in OUT (0 when it has none)."""
    return dataset(out, kind).count_rows() if committed(out, kind) else 0


def _shuffled(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, seed: int | None):
    if seed is None:
        return X, y
    order = rng.permutation(len(y))
    return X[order], y[order]


@reading
def count_rows(out: str | Location, split: str) -> int:
    return dataset(out).count_rows(filter=pads.field("split") == split)


def splits(out: str | Location) -> list[str]:
    return sorted({split for split, _ in committed(out)})


def read_file(out: Location, file: str, columns: list[str] | None = None) -> pa.Table:
    """One committed file (relative to OUT) as it is, schema metadata included, no partition column."""
    with out.fs.open_input_file(out.join(file).path) as f:
        return pq.ParquetFile(f).read(columns=columns)


def write_without(out: Location, file: str, drop: set[str], dest: str) -> None:
    """Write `file`'s rows except those of the paths in `drop` to `dest` (the caller deletes `file`
    once no index names it). Files are never edited in place. Done again after a kill, it does the
    same (or nothing, once `file` is gone)."""
    source = out.join(file)
    if not source.exists():
        return
    try:
        table = read_file(out, file)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"{source} is damaged ({' '.join(str(exc).split())[:200]}) and this run must rewrite it: "
                          f"`catdog extract ROOT --out {out} --repair` extracts its images again") from None
    kept = table.filter(pc.invert(pc.is_in(table.column("path"), pa.array(sorted(drop), pa.string()))))
    if kept.num_rows:
        options = {"use_dictionary": ["label_name"]} if "label_name" in kept.column_names else {}
        commit(out, storage.join(out.path, dest), lambda path: pq.write_table(
            kept, path, filesystem=out.fs, compression=COMPRESSION, **options))


def damaged(out: Location, file: str) -> bool:
    """A committed file (relative to OUT) that cannot be read whole."""
    try:
        read_file(out, file)
    except (OSError, pa.ArrowException):
        return True
    return False


def written_by(out: str | Location, split: str, name: str, kind: str = FEATURES_DIR) -> str:
    """The node recorded in one committed rows file (its footer alone is read)."""
    out = storage.resolve(out)
    schema = pq.read_schema(shard_path(out, kind, split, name), filesystem=out.fs)
    return (schema.metadata or {}).get(WRITTEN_BY_KEY, b"").decode()


@reading
def read_metadata(out: str | Location) -> dict:
    """The feature metadata (model, weights, input size, preprocessing, dtype, ...) of a dataset."""
    data = dataset(out)
    if not data.files:
        raise CatdogError(f"no feature files under {out}")
    return _metadata(data.schema)


def _metadata(schema: pa.Schema) -> dict:
    return json.loads((schema.metadata or {}).get(METADATA_KEY, b"{}"))
