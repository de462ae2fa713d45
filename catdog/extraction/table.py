"""An image table: a Parquet or CSV file (or a folder of Parquet files) with a row per image — its
path or URI, and optionally its class and split — read as a source of images, as a folder is.

Large collections usually arrive this way (a manifest of URIs with labels) rather than as a class
folder tree, and no listing of the store is needed. Paths may be URIs on any store (s3://, gs://),
absolute local paths, or paths relative to the table's folder, mixed. The `path` column of the
features is the table's value as given. Rows are taken in (split, path) order, so the shards (and
their names) do not depend on the order of the table's rows.

A table is read twice: once to check it (columns, paths, splits, stores) and find its classes and
whether its rows are already in (split, path) order, then as the run takes its images. A table in
that order (`ORDER BY split, path`) streams a batch at a time, in constant memory at any size;
another is sorted in memory first (its path, label and split columns as Arrow holds them, about the
paths' length plus 20 bytes a row).

A table says nothing of an image's size or time. Its index stamp is (-1, CRC-32 of the row's split
and class): a row whose class or split changes is extracted again on the next run; an image whose
bytes change under the same URI is found with --verify-content (or give it a new URI).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction.imagefolder import Listed
from catdog.storage import Location
from catdog.store.features import NO_LABEL

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}
NO_SIZE = -1  # the index's size of a table's row: a table does not say
BATCH_ROWS = 65_536
SEPARATOR = "\x00"  # split + SEPARATOR + path sorts as (split, path) does: no name holds it


@dataclass(frozen=True)
class Table:
    """An image table, checked, whose rows are read as they are needed (`entries`)."""

    table: Location
    root: Location  # the table's folder: relative paths are under it
    classes: tuple[str, ...]
    local: bool  # some images are local files
    rows: int
    path_column: str
    label_column: str | None
    split_column: str | None
    in_order: pa.Table | None = None  # a table not in (split, path) order, sorted in memory; None: streamed
    layout: str = "table"

    def entries(self) -> Iterator[Listed]:
        number = {c: i for i, c in enumerate(self.classes)}
        for batch in self._batches():
            batch = _as_strings(batch)
            paths = batch.column(self.path_column).to_pylist()
            splits = batch.column(self.split_column).cast(pa.string()).to_pylist() if self.split_column else ["all"] * len(paths)
            names = _names(batch.column(self.label_column)) if self.label_column else [None] * len(paths)
            for path, split, name in zip(paths, splits, names):
                yield Listed(path, split, NO_LABEL if name is None else number[name], NO_SIZE,
                             zlib.crc32(f"{split}\t{name}".encode()))

    def _batches(self) -> Iterator[pa.RecordBatch]:
        if self.in_order is not None:
            yield from self.in_order.to_batches(max_chunksize=BATCH_ROWS)
            return
        columns = [c for c in (self.path_column, self.label_column, self.split_column) if c]
        try:
            yield from _dataset(self.table).to_batches(columns=columns, batch_size=BATCH_ROWS)
        except (OSError, pa.ArrowException) as exc:
            raise CatdogError(f"cannot read {self.table}: {' '.join(str(exc).split())[:300]}") from None


def read(table: str | Location, path_column: str = "path", label_column: str | None = None,
         split_column: str | None = None) -> Table:
    """A table's images, checked in one pass over it. `label_column`/`split_column` None:
    "label"/"split" if the table has them; named: the table must have them. Rows without a class are
    unlabeled; without a split, "all"."""
    table = storage.resolve(table)
    data = _dataset(table)
    names = data.schema.names
    label_column = _column(table, names, label_column, "label")
    split_column = _column(table, names, split_column, "split")
    if path_column not in names:
        raise CatdogError(f"no column {path_column!r} in {table} (it has: {', '.join(names)}); name the column of "
                          "image paths with --path-column")
    wanted = [c for c in (path_column, label_column, split_column) if c]
    labels, stores, rows, local, ordered, last = set(), set(), 0, False, True, None
    integer = label_column is not None and pa.types.is_integer(data.schema.field(label_column).type)
    try:
        for batch in data.to_batches(columns=wanted, batch_size=BATCH_ROWS):
            if not batch.num_rows:
                continue
            batch = _as_strings(batch)
            paths = batch.column(path_column)
            if not pa.types.is_string(paths.type):
                raise CatdogError(f"column {path_column!r} of {table} holds {paths.type}, not paths")
            if paths.null_count or pc.any(pc.equal(paths, "")).as_py():
                raise CatdogError(f"column {path_column!r} of {table} has empty paths")
            splits = _splits(batch.column(split_column), table) if split_column else pa.array(["all"] * len(paths))
            if label_column:
                labels.update(n for n in _names(pc.unique(batch.column(label_column).drop_null())) if n is not None)
            uri = pc.match_substring(paths, "://")
            stores.update(pc.unique(pc.replace_substring_regex(
                paths.filter(uri), r"^([^:/?]+://[^/?]*)[^?]*(\?.*)?$", r"\1\2")).to_pylist())
            others = paths.filter(pc.invert(uri))
            local = local or bool(len(others)) and (table.is_local or pc.any(pc.starts_with(others, "/")).as_py())
            keys = pc.binary_join_element_wise(splits.cast(paths.type), paths, SEPARATOR)
            if ordered:
                _refuse_twice(keys, last, table)
                ordered = (last is None or last < keys[0].as_py()) and (
                    len(keys) < 2 or not pc.any(pc.less(keys[1:], keys[:-1])).as_py())
            last = keys[-1].as_py()
            rows += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {table}: {' '.join(str(exc).split())[:300]}") from None
    if not rows:
        raise CatdogError(f"no rows in {table}")
    classes = tuple(sorted(labels, key=int) if integer else sorted(labels))
    _check_stores(stores)
    in_order = None if ordered else _sorted(data, wanted, path_column, split_column, table)
    return Table(table, table.parent(), classes, local, rows, path_column, label_column, split_column, in_order)


def _sorted(data: pads.Dataset, columns: list[str], path_column: str, split_column: str | None, table: Location) -> pa.Table:
    """A table not in (split, path) order, sorted in memory (and checked for an image twice)."""
    try:
        rows = storage.read_dataset(data, columns)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {table}: {' '.join(str(exc).split())[:300]}") from None
    rows = _as_strings(rows)
    keys = [(split_column, "ascending")] if split_column else []
    rows = rows.take(pc.sort_indices(rows, sort_keys=[*keys, (path_column, "ascending")])).combine_chunks()
    paths = rows.column(path_column)
    splits = rows.column(split_column).cast(paths.type) if split_column else pa.array([""] * len(paths), paths.type)
    _refuse_twice(pc.binary_join_element_wise(splits, paths, SEPARATOR).combine_chunks(), None, table)
    return rows


def _as_strings(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Text columns as plain `string`, however the table's writer stored them: pandas 3 and Polars
    write `large_string` (or `string_view`), a categorical is a `dictionary`. Each batch holds far
    less than string's 2 GiB of text."""
    for i, field in enumerate(data.schema):
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        textual = pa.types.is_large_string(kind) or pa.types.is_string(kind) or pa.types.is_string_view(kind)
        if textual and field.type != pa.string():
            data = data.set_column(i, field.name, pc.cast(data.column(i), pa.string()))
    return data


def _refuse_twice(keys: pa.Array, last: str | None, table: Location) -> None:
    """Keys (split + SEPARATOR + path) in order: the same image twice is two equal neighbours."""
    twice = pc.equal(keys[1:], keys[:-1]) if len(keys) > 1 else pa.array([], pa.bool_())
    if last == keys[0].as_py() or pc.any(twice).as_py():
        key = keys[0].as_py() if last == keys[0].as_py() else keys.filter(pa.concat_arrays([twice, pa.array([False])]))[0].as_py()
        raise CatdogError(f"{key.split(SEPARATOR, 1)[1]} is in {table} more than once: a table holds each image once")


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


def _splits(values: pa.Array, table: Location) -> pa.Array:
    values = values.cast(pa.string())
    bad = pc.or_kleene(pc.or_kleene(pc.is_null(values), pc.equal(values, "")),
                       pc.or_kleene(pc.match_substring(values, "/"), pc.match_substring(values, "=")))
    if pc.any(bad).as_py():  # a split names a folder: split=NAME
        raise CatdogError(f"split {values.filter(bad)[0].as_py()!r} in {table}: a split is a non-empty name without '/' or '='")
    return values


def _names(values: pa.Array) -> list[str | None]:
    """Class names of label values (integer labels named by their number; empty: unlabeled). The
    classes are in numeric order for integers, else sorted, as Keras numbers class folders."""
    return [None if v is None or str(v) == "" else str(v) for v in values.to_pylist()]


def _check_stores(stores: set[str]) -> None:
    """Every store the table names, reached once now: a missing bucket or wrong credentials are one
    line before any work, not an error in every image."""
    for store in sorted(stores):
        storage.resolve(store)
