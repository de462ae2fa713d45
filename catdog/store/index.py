"""OUT/index.parquet: which file holds each image's row, and what the image was when it was read.

One row per image of ROOT that has a row in OUT (features or errors): its path, the listing's size
and modification time, the SHA-1 of the bytes that were decoded, and the file under OUT holding
its row. Rows are in (split, path) order, the order in which a listing streams (for a folder, plain
path order). Every run writes it last; the next run merges ROOT's listing with it as both stream
(`Comparison`) to find what was added, changed and removed, so only those images are read again,
and neither the listing nor the index is ever whole in memory.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catdog import storage
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store.files import commit, read_parquet
from catdog.store.layout import INDEX

Stamps = Mapping[str, tuple[int, int]]  # path -> (size in bytes, modification time in ns)
SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("sha1", pa.string()),
                    ("file", pa.string())])
ORDER = {b"catdog.order": b"split,path"}  # an index written in (split, path) order says so
BATCH_ROWS = 65_536  # rows per batch read or written: the index is never whole in memory


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    sha1: str  # "" when not known (a shard committed by a run that was killed before it could say)
    file: str  # relative to OUT: features/split=S/part-....parquet or errors/split=S/part-....parquet


Index = dict[str, Entry]
Row = tuple[str, Entry]  # (path, entry): one row of the index


def split_of(file: str) -> str:
    """The split of an index row, from the file holding it: features/split=S/part-....parquet."""
    return file.split("/", 2)[1][len("split="):]


def key(row: Row) -> tuple[str, str]:
    return split_of(row[1].file), row[0]


@dataclass(frozen=True)
class Changes:
    """How ROOT differs from what OUT holds: counts, and the rows that must go, file by file."""

    added: int
    changed: int
    removed: int
    unchanged: int
    superseded: dict[str, tuple[str, ...]] = field(default_factory=dict)  # file -> its paths changed or removed
    new_tars: int = 0  # WebDataset tars not read before (their images are counted once read)

    @property
    def pending(self) -> int:
        """How many images (and new tars) a run has to read: new ones and ones whose content changed."""
        return self.added + self.changed + self.new_tars

    def __str__(self) -> str:
        tars = f", {self.new_tars:,} new tars" if self.new_tars else ""
        return f"added {self.added:,}, changed {self.changed:,}, removed {self.removed:,}, unchanged {self.unchanged:,}{tars}"


def exists(out: Location) -> bool:
    return out.join(INDEX).exists()


def read(out: Location) -> Index | None:
    """The whole index in memory, read in one request (a reader without OUT's lock sees the old
    index or the new one: `read_parquet`); extractions stream it under the lock (`rows`)."""
    file = out.join(INDEX)
    if not file.exists():
        return None
    try:
        return dict(_rows(read_parquet(file, schema=SCHEMA).to_batches()))
    except (pa.ArrowException, OSError) as exc:
        raise _damaged(file, exc) from None


def rows(out: Location) -> Iterator[Row]:
    """The index's rows in (split, path) order, a batch at a time, from one open file: a commit that
    replaces it meanwhile is not seen. On an object store the file is first copied to a local
    temporary file (in one read, tried again as `storage.small_reads_retried` says). An index written
    before its rows were ordered so is sorted in memory."""
    ordered: list[bool] = []
    batches = _batches(out, SCHEMA.names, ordered)
    first = next(batches, None)
    if first is None:
        return
    if not ordered[0]:
        yield from sorted(_rows([first, *batches]), key=key)
        return
    yield from _rows([first])
    yield from _rows(batches)


def _batches(out: Location, columns: list[str], ordered: list[bool] | None = None) -> Iterator[pa.RecordBatch]:
    """The index's batches (see `rows`); `ordered` is told whether its rows are in (split, path) order."""
    file = out.join(INDEX)
    with tempfile.TemporaryDirectory(prefix="catdog-index-") as scratch:
        try:
            if out.is_object_store:
                local = os.path.join(scratch, INDEX)
                storage.small_reads_retried(lambda: _copy(file, local), True)
                reader = pq.ParquetFile(local)
            else:
                reader = pq.ParquetFile(file.fs.open_input_file(file.path))
            if ordered is not None:
                ordered.append((reader.schema_arrow.metadata or {}).get(b"catdog.order") == ORDER[b"catdog.order"])
            yield from reader.iter_batches(BATCH_ROWS, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise _damaged(file, exc) from None


def _copy(file: Location, local: str, chunk: int = 8 << 20) -> None:
    with file.fs.open_input_stream(file.path) as source, open(local, "wb") as target:
        while block := source.read(chunk):
            target.write(block)


def _damaged(file: Location, exc: Exception) -> CatdogError:
    return CatdogError(f"{file} is damaged ({' '.join(str(exc).split())[:200]}): extract again with --overwrite, "
                       "or into another --out")


def counts(out: Location) -> tuple[int, int]:
    """(feature rows, error rows) OUT's index names, from its `file` column alone, streamed: a total
    without opening every shard's footer (tens of thousands of requests on a store at 10 M images)."""
    tally = [0, 0]
    for batch in _batches(out, ["file"]):
        _count(tally, batch.column(0))
    return tally[0], tally[1]


def _count(tally: list[int], files: pa.Array) -> None:
    """Add a batch's feature rows and error rows (by the file holding each) to `tally`."""
    errors = pc.sum(pc.starts_with(files, "errors/")).as_py() or 0
    tally[0], tally[1] = tally[0] + len(files) - errors, tally[1] + errors


def _rows(batches) -> Iterator[Row]:
    for batch in batches:
        batch = pa.Table.from_batches([batch]).cast(SCHEMA)
        for path, size, mtime, sha1, where in zip(*(batch.column(n).to_pylist() for n in SCHEMA.names)):
            yield path, Entry(size, mtime, sha1, where)


def write(out: Location, index: Index) -> None:
    write_rows(out, sorted(index.items(), key=key))


def write_rows(out: Location, ordered: Iterable[Row]) -> tuple[int, int]:
    """The index from rows in (split, path) order, written as they come and committed whole; returns
    its (feature rows, error rows)."""
    return write_batches(out, (batch for rows in _chunks(ordered) for batch in _table(rows).to_batches()))


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == BATCH_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_batches(out: Location, batches: Iterable[pa.RecordBatch]) -> tuple[int, int]:
    """The index from Arrow batches of rows in (split, path) order (checked a batch at a time); returns
    its (feature rows, error rows), counted as it is written."""
    tally = [0, 0]

    def write(path: str) -> None:
        tally[:] = [0, 0]  # a write done again starts over
        last = None
        with pq.ParquetWriter(path, SCHEMA.with_metadata(ORDER), filesystem=out.fs) as writer:
            for batch in batches:
                if batch.num_rows:
                    splits = pc.replace_substring_regex(batch.column("file"), r"^[^/]*/split=([^/]*)/.*$", r"\1")
                    keys = pc.binary_join_element_wise(splits, batch.column("path"), "\x00")
                    if (last is not None and keys[0].as_py() <= last) or pc.any(pc.less_equal(keys[1:], keys[:-1])).as_py():
                        raise ValueError("index rows out of order")  # would break the next run's merge
                    last = keys[-1].as_py()
                    _count(tally, batch.column("file"))
                writer.write_batch(batch)

    commit(out, storage.join(out.path, INDEX), write)
    return tally[0], tally[1]


def _table(batch: list[Row]) -> pa.Table:
    return pa.table([[p for p, _ in batch], [e.size for _, e in batch], [e.mtime_ns for _, e in batch],
                     [e.sha1 for _, e in batch], [e.file for _, e in batch]], schema=SCHEMA)


class Spool:
    """A run's new index rows, in order, in a local temporary file until its commit reads them back."""

    def __init__(self) -> None:
        # A file without a name: a run that is killed (SIGKILL, a lost node) leaves nothing behind.
        self.file = tempfile.TemporaryFile(prefix="catdog-index-", suffix=".parquet")
        self.writer = pq.ParquetWriter(self.file, SCHEMA)
        self.batch: list[Row] = []
        self.count = 0

    def add(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.batch.append(row)
            if len(self.batch) == BATCH_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.writer.write_table(_table(self.batch))
            self.count += len(self.batch)
            self.batch = []

    def rows(self) -> Iterator[Row]:
        yield from _rows(self.batches())

    def batches(self) -> Iterator[pa.RecordBatch]:
        self._flush()
        self.writer.close()
        self.file.seek(0)
        yield from pq.ParquetFile(self.file).iter_batches(BATCH_ROWS)

    def close(self) -> None:
        self.writer.close()
        self.file.close()


def entries(stamps: Stamps, file: str, paths: Iterable[str], digests: Iterable[str]) -> list[Row]:
    """Index rows for images just written to `file`, stamped with the listing they came from."""
    return [(p, Entry(*stamps[p], d, file)) for p, d in zip(paths, digests)]


class Comparison:
    """ROOT's listing merged with OUT's index, both in (split, path) order, as the listing streams.

    An image is added when the index does not have it, changed when its size or modification time
    differs, or, given `content` (paths -> SHA-1 of their bytes now), when its bytes do; an image of
    the index the listing no longer has is removed. A tar (WebDataset) owns the index's rows under
    it (`x.tar/KEY`): it is new without any, changed (all of them) when its own size or time differs
    from theirs. `pending` yields the added and changed images and tars of the listing in order;
    `changes` counts them all once it is done."""

    WINDOW = 256  # listed images held while their contents are digested (with `content`)

    def __init__(self, previous: Iterable[Row], content: Callable[[list[str]], dict[str, str]] | None = None) -> None:
        self.previous, self.content = iter(previous), content
        self.counts = dict.fromkeys(("added", "changed", "removed", "unchanged", "new_tars"), 0)
        self.superseded: dict[str, list[str]] = {}
        self.finished = False

    def pending(self, listed: Iterable) -> Iterator:
        row = next(self.previous, None)
        window: list = []
        last = None
        for entry in listed:
            here = entry.key
            if last is not None and here <= last:
                raise ValueError(f"listing out of order at {entry.path!r}")  # the merge needs the index's order
            last = here
            while row is not None and key(row) < here:
                self._drop(row, "removed")
                row = next(self.previous, None)
            if entry.container:
                yield from self._judge(window)
                window, owned = [], []
                while row is not None and key(row)[0] == here[0] and key(row)[1].startswith(here[1]):
                    owned.append(row)
                    row = next(self.previous, None)
                if self._tar_pending(entry, owned):
                    yield entry
                continue
            known = row if row is not None and key(row) == here else None
            if known is not None:
                row = next(self.previous, None)
            window.append((entry, known))
            if len(window) == self.WINDOW:
                yield from self._judge(window)
                window = []
        yield from self._judge(window)
        while row is not None:
            self._drop(row, "removed")
            row = next(self.previous, None)
        self.finished = True

    def _judge(self, window: list) -> Iterator:
        same = [e.path for e, known in window if known is not None and (known[1].size, known[1].mtime_ns) == (e.size, e.mtime_ns)]
        now = self.content(same) if self.content is not None and same else {}
        for entry, known in window:
            if known is None:
                self.counts["added"] += 1
                yield entry
            elif (known[1].size, known[1].mtime_ns) != (entry.size, entry.mtime_ns) or (
                    self.content is not None and (not known[1].sha1 or now[entry.path] != known[1].sha1)):
                self._drop(known, "changed")
                yield entry
            else:
                self.counts["unchanged"] += 1

    def _tar_pending(self, tar, owned: list[Row]) -> bool:
        if not owned:
            self.counts["new_tars"] += 1
            return True
        if all((e.size, e.mtime_ns) == (tar.size, tar.mtime_ns) for _, e in owned):
            self.counts["unchanged"] += len(owned)
            return False
        for row in owned:
            self._drop(row, "changed")
        return True

    def _drop(self, row: Row, how: str) -> None:
        self.counts[how] += 1
        self.superseded.setdefault(row[1].file, []).append(row[0])

    @property
    def changes(self) -> Changes:
        assert self.finished, "the listing has not been read to its end"
        return Changes(**self.counts, superseded={f: tuple(p) for f, p in sorted(self.superseded.items())})


def merged(previous: Iterable[Row], drop: dict[str, Iterable[str]], renamed: dict[str, str],
           added: Iterable[Row]) -> Iterator[Row]:
    """The index after a commit, streamed in order: the previous rows but those `drop` names (file ->
    paths), their files renamed, and the added rows merged in."""
    dropped = {(f, p) for f, paths in drop.items() for p in paths}
    kept = ((p, Entry(e.size, e.mtime_ns, e.sha1, renamed.get(e.file, e.file))) for p, e in previous
            if (e.file, p) not in dropped)
    return heapq.merge(kept, added, key=key)
