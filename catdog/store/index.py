"""OUT/index.parquet: which file holds each image's row, and what the image was when it was read.

One row per image of ROOT that has a row in OUT (features or errors): its path, the listing's size
and modification time, the SHA-1 of the bytes that were decoded, and the file under OUT holding
its row. Every run writes it last; the next run compares ROOT's listing against it to find what
was added, changed and removed (`compare`), so only those images are read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from catdog import storage
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store.files import commit, read_parquet
from catdog.store.layout import INDEX

Stamps = Mapping[str, tuple[int, int]]  # path -> (size in bytes, modification time in ns), in listing order
SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("sha1", pa.string()),
                    ("file", pa.string())])


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    sha1: str  # "" when not known (a shard committed by a run that was killed before it could say)
    file: str  # relative to OUT: features/split=S/part-....parquet or errors/split=S/part-....parquet


Index = dict[str, Entry]


@dataclass(frozen=True)
class Changes:
    """How ROOT differs from what OUT holds, path by path."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def pending(self) -> set[str]:
        """The images a run has to read: new ones and ones whose content changed."""
        return set(self.added) | set(self.changed)

    @property
    def superseded(self) -> set[str]:
        """The images whose present rows must go: changed (a new row replaces it) and removed."""
        return set(self.changed) | set(self.removed)

    def __str__(self) -> str:
        counts = (len(self.added), len(self.changed), len(self.removed), len(self.unchanged))
        return "added {:,}, changed {:,}, removed {:,}, unchanged {:,}".format(*counts)


def read(out: Location) -> Index | None:
    file = out.join(INDEX)
    if not file.exists():
        return None
    try:
        table = read_parquet(file, schema=SCHEMA)
    except (pa.ArrowException, OSError) as exc:
        raise CatdogError(f"{file} is damaged ({' '.join(str(exc).split())[:200]}): extract again with --overwrite, "
                          "or into another --out") from None
    columns = [table.column(n).to_pylist() for n in SCHEMA.names]
    return {path: Entry(size, mtime, sha1, where) for path, size, mtime, sha1, where in zip(*columns)}


def write(out: Location, index: Index) -> None:
    paths = sorted(index)
    entries = [index[p] for p in paths]
    table = pa.table([paths, [e.size for e in entries], [e.mtime_ns for e in entries], [e.sha1 for e in entries],
                      [e.file for e in entries]], schema=SCHEMA)
    commit(out, storage.join(out.path, INDEX), lambda path: pq.write_table(table, path, filesystem=out.fs))


def entries(stamps: Stamps, file: str, paths: Iterable[str], digests: Iterable[str]) -> Index:
    """Index entries for images just written to `file`, stamped with the listing they came from."""
    return {p: Entry(*stamps[p], d, file) for p, d in zip(paths, digests)}


def compare(index: Index, stamps: Stamps, content: Callable[[list[str]], dict[str, str]] | None = None) -> Changes:
    """ROOT's listing (`stamps`) against the index: an image changed when its size or modification
    time did, or, given `content` (paths -> SHA-1 of their bytes now), when its bytes did."""
    known = [p for p in stamps if p in index]
    changed = {p for p in known if (index[p].size, index[p].mtime_ns) != tuple(stamps[p])}
    if content is not None:
        look = [p for p in known if p not in changed]
        now = content(look)
        changed |= {p for p in look if not index[p].sha1 or now[p] != index[p].sha1}
    return Changes(
        added=tuple(p for p in stamps if p not in index),
        changed=tuple(p for p in known if p in changed),
        removed=tuple(sorted(set(index) - set(stamps))),
        unchanged=tuple(p for p in known if p not in changed),
    )
