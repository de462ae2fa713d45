"""A run's plan as the source streams: the shards it cuts (in the feed's thread) and OUT's new index
rows, kept in listing order as the shards are written (in the job's thread)."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction import imagefolder
from catdog.extraction.imagefolder import Listed, PlanDigest, Shard, Source
from catdog.storage import Location
from catdog.store import features, index, layout
from catdog.vision import convbase, images

if TYPE_CHECKING:
    from catdog.extraction.pipeline import WrittenRow


@dataclass(frozen=True)
class Run:
    """What this run has to do: its source, where its shards go, what OUT already holds, the weights.
    The shards themselves are cut while the source is listed (`Planner`)."""

    source: Source
    target: Location  # OUT for a first run, the generation's staging folder for an incremental one
    generation: int
    incremental: bool  # OUT has an index: this run extracts what changed since, and commits a generation
    weights: convbase.Weights
    metadata: dict
    verify_content: bool = False
    repaired: tuple[str, ...] = ()
    rows: str = layout.FEATURES_DIR  # where its shards' rows go: features, or a model's predictions


class Planner:
    """Cuts a run's shards from its source as it streams (in the feed's thread), and keeps OUT's new
    index rows in the source's order as the shards are written (in the job's thread).

    The source's images come in (split, path) order, and so do the shards cut from them, and the
    rows of each: the index is written in that order as each shard and those before it are done,
    so only the shards in flight are held. A shard a killed run had already committed is not run
    again: its rows are read back from its file. With an index, only the images the comparison
    finds added or changed are cut into shards."""

    def __init__(self, plan: Run, shard_size: int, out: Location, only: list[Shard] | None = None) -> None:
        self.plan, self.shard_size, self.out, self.only = plan, shard_size, out, only
        self.comparison = None
        if plan.incremental:
            locate = storage.Resolver(plan.source.root)
            content = (lambda paths: dict(zip(paths, images.digests([locate(p) for p in paths])))) \
                if plan.verify_content else None
            self.comparison = index.Comparison(index.rows(out), content)
        self.done = features.committed(plan.target, plan.rows) if only is None else set()
        self.errors_done = features.committed(plan.target, layout.ERRORS_DIR) if only is None else set()
        self.spool = index.Spool()
        self.lock = threading.Lock()
        self.order: collections.deque = collections.deque()  # shards cut and not yet in the index, in order
        self.written: dict[tuple[str, str], WrittenRow] = {}
        self.digest = PlanDigest()
        self.resumed, self.pending_images = 0, 0
        self.listing_seconds, self.listed_at = 0.0, None

    @property
    def changes(self) -> index.Changes | None:
        return self.comparison.changes if self.comparison is not None else None

    def shards(self) -> Iterator[Shard]:
        """The shards this run has to extract, as the listing goes (in the feed's thread)."""
        if self.only is not None:
            yield from self._expect_all(self.only)
            return
        listed: Iterable[Listed] = self._timed(self.plan.source.entries())
        if self.comparison is not None:
            listed = self.comparison.pending(listed)
        cut = {}  # (split, index) -> name of this run's shards: a committed shard elsewhere is another listing's
        for shard in imagefolder.cut_shards(listed, self.shard_size, self.plan.generation):
            self.digest.add(shard)
            cut[(shard.split, shard.index)] = shard.name
            if (shard.split, shard.name) in self.done:
                self.resumed += 1
                self._add(shard, resumed=True)
                continue
            self._add(shard, resumed=False)
            self.pending_images += 0 if shard.container else len(shard.paths)  # a tar's count is known once read
            yield shard
        self._foreign(cut)

    def _expect_all(self, shards: list[Shard]) -> Iterator[Shard]:
        for shard in shards:
            self._add(shard, resumed=False)
            self.pending_images += len(shard.paths)
            yield shard

    def _timed(self, listed: Iterable[Listed]) -> Iterator[Listed]:
        """The listing, with the time spent waiting on it (which overlaps the pipeline's work)."""
        iterator = iter(listed)
        while True:
            began = time.perf_counter()
            entry = next(iterator, None)
            self.listing_seconds += time.perf_counter() - began
            if entry is None:
                self.listed_at = time.time()
                return
            yield entry

    def _foreign(self, cut: dict) -> None:
        """Committed shards this listing did not cut: a first run killed over another listing left them
        in OUT (refused), an incremental one in its staging folder (deleted: they were never committed)."""
        names = {(split, name) for (split, _), name in cut.items()}
        foreign = sorted((self.done | self.errors_done) - names)
        if not foreign:
            return
        if self.plan.incremental:
            for split, name in foreign:
                for kind in layout.KINDS:
                    self.plan.target.join(layout.shard_file(kind, split, name)).delete()
            return
        split, name = foreign[0]
        raise CatdogError(
            f"{self.out} holds shards of a different file listing (e.g. split={split}/{name}) from a first run that "
            "did not finish; finish it over the same folder first, or use --overwrite or another --out")

    def _add(self, shard: Shard, resumed: bool) -> None:
        with self.lock:
            self.order.append((shard, resumed))
            self._flush()

    def record(self, row: WrittenRow) -> None:
        """A shard is written (in the job's thread): its index rows go out once those before it have."""
        with self.lock:
            self.written[(row["split"], row["name"])] = row
            self._flush()

    def _flush(self) -> None:
        while self.order:
            shard, resumed = self.order[0]
            key = (shard.split, shard.name)
            if resumed:
                self.spool.add(self._rows_from_files(shard))
            elif key in self.written:
                self.spool.add(self._rows_written(shard, self.written.pop(key)))
            else:
                return
            self.order.popleft()

    def _rows_written(self, shard: Shard, row: WrittenRow) -> list[index.Row]:
        n = int(row["rows"])
        where = {p: (d, layout.shard_file(self.plan.rows if i < n else layout.ERRORS_DIR, shard.split, shard.name))
                 for i, (p, d) in enumerate(zip(row["paths"], row["digests"]))}
        return [(p, index.Entry(*stamp, *where[p])) for p, stamp in self._stamped(shard, where)]

    def _rows_from_files(self, shard: Shard) -> list[index.Row]:
        """A shard committed by a killed run: its rows read back from its files (their digests unknown)."""
        kinds = [self.plan.rows] + ([layout.ERRORS_DIR] if (shard.split, shard.name) in self.errors_done else [])
        where = {}
        for kind in kinds:
            file = layout.shard_file(kind, shard.split, shard.name)
            where.update(dict.fromkeys(features.read_file(self.plan.target, file, ["path"]).column("path").to_pylist(), ("", file)))
        return [(p, index.Entry(*stamp, *where[p])) for p, stamp in self._stamped(shard, where)]

    @staticmethod
    def _stamped(shard: Shard, written: dict) -> Iterable[tuple[str, tuple[int, int]]]:
        """A shard's images with their stamps, in order: a tar's are the samples written, each with the tar's stamp."""
        if shard.container:
            return ((p, shard.stamps[0]) for p in sorted(written))
        return zip(shard.paths, shard.stamps)

    def rows(self) -> Iterator[index.Row]:
        """This run's index rows, once every shard is done."""
        assert not self.order, "shards are still being written"
        return self.spool.rows()

    def close(self) -> None:
        self.spool.close()
