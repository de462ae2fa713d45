"""An image table: a Parquet or CSV file (or a folder of Parquet files) with a row per image — its
path or URI, and optionally its class and split — read as the `ImageSet` a folder's listing gives.

Large collections usually arrive this way (a manifest of URIs with labels) rather than as a class
folder tree, and no listing of the store is needed. Paths may be URIs on any store (s3://, gs://),
absolute local paths, or paths relative to the table's folder, mixed. The `path` column of the
features is the table's value as given. Rows are taken in path order, so the shards (and their
names) do not depend on the order of the table's rows.

A table says nothing of an image's size or time. Its index stamp is (-1, CRC-32 of the row's split
and class): a row whose class or split changes is extracted again on the next run; an image whose
bytes change under the same URI is found with --verify-content (or give it a new URI).
"""

from __future__ import annotations

import os
import zlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction.imagefolder import ImageSet
from catdog.storage import Location
from catdog.store.features import NO_LABEL

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}
NO_SIZE = -1  # the index's size of a table's row: a table does not say


def read(table: str | Location, path_column: str = "path", label_column: str | None = None,
         split_column: str | None = None) -> ImageSet:
    """The images a table lists. `label_column`/`split_column` None: "label"/"split" if the table has
    them; named: the table must have them. Rows without a class are unlabeled; without a split, "all"."""
    table = storage.resolve(table)
    data = _dataset(table)
    names = data.schema.names
    label_column = _column(table, names, label_column, "label")
    split_column = _column(table, names, split_column, "split")
    if path_column not in names:
        raise CatdogError(f"no column {path_column!r} in {table} (it has: {', '.join(names)}); name the column of "
                          "image paths with --path-column")
    wanted = [c for c in (path_column, label_column, split_column) if c]
    try:
        rows = data.to_table(columns=wanted)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {table}: {' '.join(str(exc).split())[:300]}") from None
    if rows.num_rows == 0:
        raise CatdogError(f"no rows in {table}")
    paths = rows.column(path_column)
    if not pa.types.is_string(paths.type) and not pa.types.is_large_string(paths.type):
        raise CatdogError(f"column {path_column!r} of {table} holds {paths.type}, not paths")
    if paths.null_count or pc.any(pc.equal(paths, "")).as_py():
        raise CatdogError(f"column {path_column!r} of {table} has empty paths")
    rows = rows.sort_by(path_column)
    paths = rows.column(path_column).to_pylist()
    twice = next((a for a, b in zip(paths, paths[1:]) if a == b), None)
    if twice is not None:
        raise CatdogError(f"{twice} is in {table} more than once: a table holds each image once")
    splits = _splits(rows, split_column, table)
    names_, classes = _labels(rows, label_column)
    index = {c: i for i, c in enumerate(classes)}
    labels = tuple(NO_LABEL if n is None else index[n] for n in names_)
    _check_stores(paths)
    stamps = tuple((NO_SIZE, zlib.crc32(f"{s}\t{n}".encode())) for s, n in zip(splits, names_))
    local = any(not storage.is_uri(p) and (os.path.isabs(p) or table.is_local) for p in paths)
    return ImageSet(table.parent(), "table", classes, tuple(paths), tuple(splits), labels, stamps, local=local)


def _dataset(table: Location) -> pads.Dataset:
    kind = table.kind()
    if kind == pafs.FileType.NotFound:
        raise CatdogError(f"table not found: {table}")
    if kind == pafs.FileType.Directory:
        return pads.dataset(table.path, filesystem=table.fs, format="parquet")
    name = table.path.lower().removesuffix(".gz")
    extension = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if extension not in FORMATS:
        raise CatdogError(f"{table}: a table is a .parquet or .csv file (or a folder of Parquet files)")
    fmt = pads.CsvFileFormat(parse_options=pacsv.ParseOptions(delimiter="\t")) if extension == ".tsv" else FORMATS[extension]
    try:
        return pads.dataset(table.path, filesystem=table.fs, format=fmt)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {table}: {' '.join(str(exc).split())[:300]}") from None


def _column(table: Location, names: list[str], given: str | None, default: str) -> str | None:
    if given is None:
        return default if default in names else None
    if given not in names:
        raise CatdogError(f"no column {given!r} in {table} (it has: {', '.join(names)})")
    return given


def _splits(rows: pa.Table, column: str | None, table: Location) -> list[str]:
    if column is None:
        return ["all"] * rows.num_rows
    values = rows.column(column).cast(pa.string()).to_pylist()
    bad = [v for v in values if not v or "/" in v or "=" in v]  # a split names a folder: split=NAME
    if bad:
        raise CatdogError(f"split {bad[0]!r} in {table}: a split is a non-empty name without '/' or '='")
    return values


def _labels(rows: pa.Table, column: str | None) -> tuple[list, tuple[str, ...]]:
    """Each row's class name (None: unlabeled) and the classes in order: integer labels in numeric
    order (class k is named "k"), names in sorted order, as Keras numbers class folders."""
    if column is None:
        return [None] * rows.num_rows, ()
    values = rows.column(column)
    present = pc.unique(values.drop_null()).to_pylist()
    if pa.types.is_integer(values.type):
        order = [str(v) for v in sorted(present)]
    else:
        present = [str(v) for v in present if str(v) != ""]
        order = sorted(present)
    names = [None if v is None or str(v) == "" else str(v) for v in values.to_pylist()]
    return names, tuple(order)


def _check_stores(paths: list[str]) -> None:
    """Every store the table names, reached once now: a missing bucket or wrong credentials are one
    line before any work, not an error in every image."""
    for store in sorted({storage.store_of(p) for p in paths if storage.is_uri(p)}):
        storage.resolve(store)
