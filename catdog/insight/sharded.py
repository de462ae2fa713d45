"""Each row's nearest neighbours when the vectors are more than one process should hold: the search
of `neighbours`, cut into tasks that each hold a slice of them.

Rows are numbered in the order of the Parquet row groups that hold them (`pieces`). A *shard* is a
run of row groups whose vectors fit one task's memory (SHARD_BYTES), a *block* a run of about
BLOCK_ROWS rows. The approximate search's coarse quantiser (IVF centroids, and the PCA of wide
vectors) is fitted on a sample by one task, and one task per block finds the cells each of its rows
is looked up in. Then one task per shard loads its vectors, indexes them
(exact: all of them; approximate: IVF cells of half-precision codes on the shared centroids) and
streams every block through that index: each row's best `top + 1` in the shard, by exact cosine on
the full vectors, one Parquet file per block. Then one task per block merges the shards' files into
each row's `top` neighbours among all rows and writes them; the pairs at or above the threshold come
back to the caller. The caller holds the row counts, the centroids and the pairs, never a vector.

The tasks are plain functions, run by whatever `map` the caller passes: the builtin one here, Ray
tasks on a cluster (`catdog.cluster.map_in_tasks`). A task run twice (Ray retrying one lost with its
node) writes the same file again: the result is the same.
"""

from __future__ import annotations

import functools
import io
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catdog import storage
from catdog.errors import CatdogError
from catdog.insight import neighbours
from catdog.insight.embeddings import vectors
from catdog.store import features, layout, manifest

SHARD_BYTES = 512 << 20  # float32 vectors a shard task holds (its worker peaks at 4-5 times this: BENCHMARKS.md)
BLOCK_ROWS = 65_536  # queries streamed through a shard at once
STAGING, LISTS = "_shards", "neighbours"  # in the report folder: the shards' files, then the merged lists
LIST_FILES = "part-{:05d}.parquet"
FOOTERS_PER_TASK = 256  # files whose footers one task reads (catdog's OUT has a file per 256 images)

# A map over tasks: fn over items, yielding (where it ran, its result) as the tasks finish; with
# whole_node, each task may use every core of a node (the quantiser's k-means: nothing else runs then).
Mapper = Callable[..., Iterator[tuple[str, object]]]


def here(fn, items, whole_node: bool = False) -> Iterator[tuple[str, object]]:
    """The map that runs every task in this process, one after another."""
    for item in items:
        yield "this process", fn(item)


def counting(map_: Mapper, tasks: dict[str, Counter]) -> Mapper:
    """`map_`, counting in `tasks` every task where it ran."""
    def counted(fn, items, whole_node=False):
        for where, result in map_(fn, items, whole_node=whole_node):
            tasks.setdefault(where, Counter())["tasks"] += 1
            yield where, result
    return counted


def ran(executor: str, why: str, tasks: dict[str, dict[str, int]] | None) -> str:
    """Where a job's work ran, in a line: this process, or Ray tasks and their rows on each node."""
    if executor != "ray":
        return f"ran in this process ({why})"
    nodes = tasks or {}
    each = "; ".join(f"node {node[:8]}: {t['tasks']} tasks, {t['rows']:,} rows" for node, t in sorted(nodes.items()))
    return (f"ran on Ray ({why}): {sum(t['tasks'] for t in nodes.values())} tasks on {len(nodes)} "
            f"node{'s' * (len(nodes) != 1)} ({each})")


def _threads() -> None:
    """faiss' threads as many as the CPUs the task was given: Ray sets OMP_NUM_THREADS per task, but
    a worker process that ran an earlier task keeps the thread count OpenMP started with."""
    import faiss

    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        faiss.omp_set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@dataclass(frozen=True)
class Source:
    """Where the vectors are: catdog's OUT (the files its index names, split from their folder) or
    another tool's Parquet file or folder (split from a column, or "all")."""

    location: storage.Location
    features_column: str | None = None  # None: catdog's OUT
    path_column: str = "path"
    split_column: str | None = None
    label_column: str | None = None  # another tool's class column (None: "label", if there)

    @property
    def column(self) -> str:
        return self.features_column or "features"

    def files(self) -> list[tuple[str, str | None]]:
        """(path on the filesystem, split from the folder or None) of every file, in order."""
        out = self.location
        if self.features_column is None:
            manifest.require_complete(out)
            named = features.indexed_files(out, layout.FEATURES_DIR) or sorted(
                f"{layout.FEATURES_DIR}/split={s}/{name}" for s, name in features.committed(out))
            return [(out.join(f).path, f.split("/")[1][len("split="):]) for f in named]
        kind = out.kind()
        if kind == pafs.FileType.NotFound:
            raise CatdogError(f"not found: {out}")
        if kind == pafs.FileType.File:
            return [(out.path, None)]
        return [(f, None) for f in sorted(pads.dataset(out.path, filesystem=out.fs, format="parquet").files)]


@dataclass(frozen=True)
class Piece:
    """One row group of one file: rows start .. start + rows of the numbering."""

    file: str
    row_group: int
    start: int
    rows: int
    split: str | None


def row_groups(source: Source, files: list[tuple[str, str | None]]) -> list[tuple[str, int, int, str | None]]:
    """A task: (file, row group, rows, split) of some files' row groups, read from their footers."""
    found = []
    for path, split in files:
        with source.location.fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
        found += [(path, g, meta.row_group(g).num_rows, split) for g in range(meta.num_row_groups)]
    return found


def size(source: Source) -> tuple[int, int]:
    """(rows, vector length), from the files' footers and the first row."""
    files = [f for f, _ in source.files()]
    if not files:
        raise CatdogError(f"no features under {source.location}: run `catdog extract` first")
    try:
        rows = pads.dataset(files, filesystem=source.location.fs, format="parquet").count_rows()
        with source.location.fs.open_input_file(files[0]) as f:
            return rows, width(pq.ParquetFile(f), source)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {source.location}: {' '.join(str(exc).split())[:300]}") from None


def pieces(source: Source, map_: Mapper) -> list[Piece]:
    """Every row group of the source, numbered in file order; their footers read by tasks."""
    files = source.files()
    if not files:
        raise CatdogError(f"no features under {source.location}: run `catdog extract` first")
    found = {}
    chunks = [files[i : i + FOOTERS_PER_TASK] for i in range(0, len(files), FOOTERS_PER_TASK)]
    for _, groups in map_(functools.partial(row_groups, source), chunks):
        for path, group, rows, split in groups:
            found[(path, group)] = (rows, split)
    order = {path: i for i, (path, _) in enumerate(files)}
    listed, start = [], 0
    for (path, group), (rows, split) in sorted(found.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        if rows:
            listed.append(Piece(path, group, start, rows, split))
            start += rows
    if start < 2:
        raise CatdogError(f"a near-duplicate search needs at least two images; {source.location} has {start}")
    return listed


@dataclass(frozen=True)
class Rows:
    """Some rows' unit vectors (the finite ones) and what names them."""

    X: np.ndarray  # (m, d) float32 unit vectors
    numbers: np.ndarray  # (m,) int64 their numbers
    paths: np.ndarray  # (m,) str
    splits: np.ndarray  # (m,) str
    non_finite: list[str]  # paths of rows left out: NaN or infinite values


def read_piece(source: Source, piece: Piece, columns: list[str]) -> pa.Table:
    """Some columns of one piece (a row group); a small read broken by throttling is read again
    (`catdog.storage.small_reads_retried`)."""
    def read() -> pa.Table:
        with source.location.fs.open_input_file(piece.file) as f:
            return pq.ParquetFile(f).read_row_group(piece.row_group, columns=columns)

    try:
        return storage.small_reads_retried(read, source.location.is_object_store)
    except (OSError, pa.ArrowException) as exc:
        raise CatdogError(f"cannot read {source.location}: {' '.join(str(exc).split())[:300]}") from None


def piece_splits(source: Source, piece: Piece, table: pa.Table) -> np.ndarray:
    """The split of each row of a piece's `table`: its split column as text, else the piece's folder's."""
    if not source.split_column:
        return np.full(table.num_rows, piece.split or "all", dtype=object)
    try:
        return table.column(source.split_column).cast(pa.string()).fill_null("all").to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:  # a split column that is not text
        raise CatdogError(f"cannot read {source.location}: {' '.join(str(exc).split())[:300]}") from None


def read(source: Source, run: list[Piece], with_vectors: bool = True) -> Rows:
    """The rows of some pieces; only the finite ones (a NaN has no cosine)."""
    names = [source.column] if with_vectors else []
    names += [source.path_column] + ([source.split_column] if source.split_column else [])
    parts, numbers, splits = [], [], []
    for piece in run:
        table = read_piece(source, piece, names)
        parts.append(table)
        numbers.append(np.arange(piece.start, piece.start + table.num_rows, dtype=np.int64))
        splits.append(piece_splits(source, piece, table))
    table = pa.concat_tables(parts) if parts else pa.table({n: [] for n in names})
    paths = table.column(source.path_column).cast(pa.string()).to_numpy(zero_copy_only=False)
    number = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
    split = np.concatenate(splits) if splits else np.zeros(0, object)
    if not with_vectors:
        return Rows(np.zeros((len(paths), 0), np.float32), number, paths, split, [])
    X = vectors(table.column(source.column).combine_chunks(), source.column, source.location) if len(table) else \
        np.zeros((0, 0), np.float32)
    finite = np.isfinite(X).all(axis=1)
    X = neighbours.unit(X[finite], copy=False)  # a copy already: the boolean index made one
    return Rows(X, number[finite], paths[finite], split[finite], paths[~finite].tolist())


def split_runs(pieces_: list[Piece], rows: int) -> list[list[Piece]]:
    """Consecutive pieces in runs of about `rows` rows (a piece is never cut)."""
    runs, current, size = [], [], 0
    for piece in pieces_:
        if current and size + piece.rows > rows:
            runs.append(current)
            current, size = [], 0
        current.append(piece)
        size += piece.rows
    return runs + ([current] if current else [])


def fit(source: Source, pieces_: list[Piece], n: int, pca_dims: int | None, seed: int) -> neighbours.Quantiser:
    """A task: the coarse quantiser, fitted on the rows of pieces drawn at random (as many as it uses)."""
    _threads()
    order = np.random.default_rng(seed).permutation(len(pieces_))
    chosen, size, wanted = [], 0, neighbours.sample_rows(n)
    for i in order:
        if size >= wanted:
            break
        chosen.append(pieces_[i])
        size += pieces_[i].rows
    sample = read(source, sorted(chosen, key=lambda p: p.start)).X
    return neighbours.fit_quantiser(sample, n, pca_dims, seed)


@dataclass(frozen=True)
class Plan:
    """What every shard task is given."""

    source: Source
    staging: storage.Location
    blocks: list[list[Piece]]
    top: int
    threshold: float
    quantiser: neighbours.Quantiser | None  # None: exact
    probes: int
    candidates: int
    sample: np.ndarray  # row numbers whose exact neighbours measure the approximate search's recall


@dataclass(frozen=True)
class ShardDone:
    rows: int
    non_finite: list[str]
    truth: tuple[np.ndarray, np.ndarray, np.ndarray]  # (sample rows, their exact best rows here, cosines)


def cells_file(staging: storage.Location, block: int) -> storage.Location:
    return staging.join(f"block-{block:05d}", "cells.npz")


def assign_block(plan: Plan, job: tuple[int, list[Piece]]) -> int:
    """A task: the cells each row of one block is looked up in (its `probes` nearest centroids),
    found once for every shard: on wide or many rows this lookup costs as much as the search."""
    _threads()
    number, block = job
    queries = read(plan.source, block)
    index = plan.quantiser.index(plan.probes)
    distances, cells = index.quantizer.search(plan.quantiser.project(queries.X), index.nprobe)
    data = io.BytesIO()
    np.savez(data, cells=cells, distances=distances)
    _write_bytes(cells_file(plan.staging, number), data.getvalue())
    return len(queries.numbers)


def shard_file(staging: storage.Location, shard: int, block: int) -> storage.Location:
    return staging.join(f"block-{block:05d}", f"shard-{shard:05d}.parquet")


def search_shard(plan: Plan, job: tuple[int, list[Piece]]) -> ShardDone:
    """A task: one shard indexed, every block searched against it, one file per block."""
    _threads()
    number, run = job
    base = read(plan.source, run)
    keep = plan.top + 1  # the row itself may be among them: the merge leaves it out
    index = None
    if plan.quantiser is not None and len(base.X):
        index = plan.quantiser.index(plan.probes)
        index.add(plan.quantiser.project(base.X))
    truth = ([], [], [])
    for b, block in enumerate(plan.blocks):
        queries = read(plan.source, block)
        cells = None
        if index is not None:
            with np.load(io.BytesIO(cells_file(plan.staging, b).read_bytes())) as assigned:
                cells = (assigned["cells"], assigned["distances"])
        found, cosines = _best(queries.X, base.X, index, plan.quantiser, keep, plan.candidates, cells)
        paired = cosines >= plan.threshold
        if len(base.numbers):
            rows = np.where(found >= 0, base.numbers[np.maximum(found, 0)], -1)
            partner = np.where(paired, base.paths[np.maximum(found, 0)], None)
            partner_split = np.where(paired, base.splits[np.maximum(found, 0)], None)
        else:
            rows, partner, partner_split = found, np.full(found.shape, None), np.full(found.shape, None)
        table = pa.table({
            "row": pa.array(queries.numbers, pa.int64()),
            "neighbours": _fixed(rows.ravel(), pa.int64(), keep),
            "cosines": _fixed(cosines.ravel(), pa.float32(), keep),
            # The names of the pair partners only: a merge cannot look a row up by its number.
            "partner": _fixed(partner.ravel(), pa.string(), keep),
            "partner_split": _fixed(partner_split.ravel(), pa.string(), keep),
        })
        _write(shard_file(plan.staging, number, b), table)
        if index is not None:
            inside = np.isin(queries.numbers, plan.sample)
            if inside.any():
                exact_rows, exact_cosines = neighbours.exact(queries.X[inside], base.X, keep)
                truth[0].append(queries.numbers[inside])
                truth[1].append(_pad(base.numbers[exact_rows], keep, -1))
                truth[2].append(_pad(exact_cosines, keep, -np.inf))
    stacked = tuple(np.concatenate(t) if t else np.zeros((0, keep) if i else 0) for i, t in enumerate(truth))
    return ShardDone(len(base.numbers), base.non_finite, stacked)


def _best(queries, base, index, quantiser, keep, candidates, cells=None) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best `keep` rows of `base` (-1, -inf where there are fewer), exact cosines;
    `cells`: the queries' cells and their distances (`assign_block`), for an approximate index."""
    if not len(base) or not len(queries):
        return np.full((len(queries), keep), -1, np.int64), np.full((len(queries), keep), -np.inf, np.float32)
    if index is None:
        found, cosines = neighbours.exact(queries, base, keep)
        return _pad(found, keep, -1), _pad(cosines, keep, -np.inf)
    _, found = index.search_preassigned(quantiser.project(queries), max(candidates, keep), *cells)
    return neighbours.rerank(queries, base, found, keep)


def _pad(a: np.ndarray, width: int, value) -> np.ndarray:
    return a if a.shape[1] >= width else np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value)


def _fixed(values, type_, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values, type_), width)


def _write(where: storage.Location, table: pa.Table) -> None:
    """A whole file or none (`Location.write_bytes`): a task killed while writing leaves no half file."""
    data = io.BytesIO()
    pq.write_table(table, data)
    _write_bytes(where, data.getvalue())


def _write_bytes(where: storage.Location, data: bytes) -> None:
    if where.is_local:
        where.fs.create_dir(where.parent().path, recursive=True)
    where.write_bytes(data)


@dataclass(frozen=True)
class Merge:
    """What every merge task is given."""

    source: Source
    staging: storage.Location
    lists: storage.Location
    shards: int
    top: int
    threshold: float
    sample: np.ndarray
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BlockDone:
    rows: int
    pairs: list[tuple[int, int, float, str, str, str, str]]  # (row a, row b, cosine, path a, split a, path b, split b)
    sample: tuple[np.ndarray, np.ndarray]  # (sample rows in this block, their found rows)


def merge_block(merge: Merge, job: tuple[int, list[Piece]]) -> BlockDone:
    """A task: one block's rows, their best `top` over every shard; the lists written, the pairs returned."""
    number, block = job
    tables = [_read(shard_file(merge.staging, s, number)) for s in range(merge.shards)]
    named = read(merge.source, block, with_vectors=False)  # the block's rows are numbered without a gap
    at = tables[0].column("row").to_numpy() - block[0].start  # its finite rows, as every shard file holds them
    own = Rows(named.X, named.numbers[at], named.paths[at], named.splits[at], [])
    found = np.concatenate([_matrix(t, "neighbours", np.int64) for t in tables], axis=1)
    cosines = np.concatenate([_matrix(t, "cosines", np.float32) for t in tables], axis=1)
    partner = np.concatenate([_matrix(t, "partner", object) for t in tables], axis=1)
    partner_split = np.concatenate([_matrix(t, "partner_split", object) for t in tables], axis=1)
    cosines = np.where((found == own.numbers[:, None]) | (found < 0), -np.inf, cosines)  # never itself
    best = np.argsort(-cosines, axis=1, kind="stable")[:, : merge.top]
    found, cosines = np.take_along_axis(found, best, 1), np.take_along_axis(cosines, best, 1)
    partner, partner_split = np.take_along_axis(partner, best, 1), np.take_along_axis(partner_split, best, 1)
    top = found.shape[1]
    table = pa.table({
        "row": pa.array(own.numbers, pa.int64()), "split": pa.array(own.splits, pa.string()),
        "path": pa.array(own.paths, pa.string()), "indices": _fixed(found.ravel(), pa.int64(), top),
        "similarity": _fixed(cosines.ravel(), pa.float32(), top),
    }).replace_schema_metadata({f"catdog.{k}": str(v) for k, v in sorted(merge.settings.items())})
    _write(merge.lists.join(LIST_FILES.format(number)), table)
    q, k = np.nonzero(cosines >= merge.threshold)
    pairs = [(int(own.numbers[i]), int(found[i, j]), float(cosines[i, j]), str(own.paths[i]), str(own.splits[i]),
              str(partner[i, j]), str(partner_split[i, j])) for i, j in zip(q, k)]
    inside = np.isin(own.numbers, merge.sample)
    return BlockDone(len(own.numbers), pairs, (own.numbers[inside], found[inside]))


def _read(where: storage.Location) -> pa.Table:
    return pq.read_table(io.BytesIO(where.read_bytes()))


def _matrix(table: pa.Table, name: str, dtype) -> np.ndarray:
    column = table.column(name).combine_chunks()
    width = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(-1, width)


@dataclass(frozen=True)
class Found:
    """A sharded search's outcome: what `similar` reports, and where each task ran."""

    rows: int
    pairs: list[tuple[str, str, str, str, float]]  # (path a, split a, path b, split b, cosine), each pair once, best first
    search: neighbours.Search
    non_finite: list[str]
    tasks: dict[str, Counter]  # where -> {"tasks": n, "rows": rows searched or merged there}
    lists: storage.Location  # the merged neighbour lists, one Parquet file per block


def search(source: Source, report: storage.Location, map_: Mapper, *, top: int, method: str = "auto",
           probes: int = 16, pca_dims: int | None = None, threshold: float = 1.0, seed: int = 0,
           shard_bytes: int = SHARD_BYTES, block_rows: int | None = None) -> Found:
    """Each row's `top` neighbours (method, probes, pca_dims as `neighbours.search`), found by tasks
    that `map_` runs; written under `report`/neighbours, the pairs at or above `threshold` returned.
    A shard holds `shard_bytes` of vectors; a block `block_rows` queries (default: a shard's rows, at
    most BLOCK_ROWS)."""
    tasks: dict[str, Counter] = {}
    counted = counting(map_, tasks)

    def tally(where, rows):
        tasks[where]["rows"] += rows

    listed = pieces(source, counted)
    n = listed[-1].start + listed[-1].rows
    with source.location.fs.open_input_file(listed[0].file) as f:
        first = pq.ParquetFile(f)
        d = width(first, source)
        if source.features_column and source.split_column is None and "split" in first.schema_arrow.names:
            source = replace(source, split_column="split")  # as `embeddings.foreign` reads it
    top = min(top, n - 1)
    exact = method == "exact" or (method == "auto" and float(n) * n * d <= neighbours.EXACT_WORK)
    quantiser, how = None, neighbours.Search("exact", d)
    if not exact:
        [(_, quantiser)] = list(counted(functools.partial(fit, source, listed, n, pca_dims), [seed], whole_node=True))
        how = quantiser.how
    shard_rows = max(1, shard_bytes // (4 * d))
    shards = split_runs(listed, shard_rows)
    blocks = split_runs(listed, block_rows or min(BLOCK_ROWS, shard_rows))  # a block's queries: a shard's memory at most
    sample = (np.sort(np.random.default_rng(seed + 1).choice(n, min(n, neighbours.RECALL_SAMPLE), replace=False))
              if quantiser is not None else np.zeros(0, np.int64))
    staging, lists = report.join(STAGING), report.join(LISTS)
    for old in (staging, lists):
        old.delete()  # a previous run's files: a smaller run must not leave blocks of a larger one
    candidates = max(4 * top, top + 1)
    plan = Plan(source, staging, blocks, top, threshold, quantiser, probes, candidates, sample)
    if quantiser is not None:
        for where, rows in counted(functools.partial(assign_block, plan), list(enumerate(blocks))):
            tally(where, rows)
    truth, non_finite = [], []
    for where, done in counted(functools.partial(search_shard, plan), list(enumerate(shards))):
        tally(where, done.rows)
        truth.append(done.truth)
        non_finite += done.non_finite
    settings = {"top": top, "method": method, "probes": probes, "pca_dims": pca_dims, "shards": len(shards)}
    merge = Merge(source, staging, lists, len(shards), top, threshold, sample, settings)
    pairs, found_sample = {}, []
    for where, done in counted(functools.partial(merge_block, merge), list(enumerate(blocks))):
        tally(where, done.rows)
        found_sample.append(done.sample)
        for a, b, cosine, path_a, split_a, path_b, split_b in done.pairs:
            key = (min(a, b), max(a, b))
            # The same pair found from both ends keeps its higher cosine (the two may differ in the last bits).
            if key not in pairs or cosine > pairs[key][4]:
                pairs[key] = (path_a, split_a, path_b, split_b, cosine) if a < b else (path_b, split_b, path_a, split_a, cosine)
    staging.delete()
    ordered = [pairs[k] for k in sorted(pairs, key=lambda k: (-pairs[k][4], k))]
    if quantiser is not None:
        how = replace(how, probes=min(probes, how.lists), candidates=candidates,
                                 recall=_recall(truth, found_sample, top, threshold))
    return Found(n - len(non_finite), ordered, how, non_finite, tasks, lists)


def width(file: pq.ParquetFile, source: Source) -> int:
    """The vectors' length: a fixed-size list's from the schema, else from the first row (one small
    batch read: a row group of vectors is hundreds of MiB)."""
    if source.column not in file.schema_arrow.names:
        raise CatdogError(f"no column {source.column!r} in {source.location} (it has: {', '.join(file.schema_arrow.names)})")
    kind = file.schema_arrow.field(source.column).type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    first = next(file.iter_batches(batch_size=1, columns=[source.column]))
    return vectors(first.column(0), source.column, source.location).shape[1]


def _recall(truth: Iterable[tuple], found: list[tuple], top: int, threshold: float) -> neighbours.Recall:
    """The approximate lists of the sample rows against their exact neighbours, merged over the shards."""
    truth = list(truth)
    rows = np.concatenate([t[0] for t in truth])
    best = np.concatenate([t[1] for t in truth]).reshape(len(rows), -1)
    cosines = np.concatenate([t[2] for t in truth]).reshape(len(rows), -1).astype(np.float32)
    cosines = np.where((best == rows[:, None]) | (best < 0), -np.inf, cosines)
    exact_rows, exact_cosines = {}, {}
    for r in np.unique(rows):
        at = rows == r
        order = np.argsort(-cosines[at].ravel(), kind="stable")[:top]
        exact_rows[r], exact_cosines[r] = best[at].ravel()[order], cosines[at].ravel()[order]
    listed = {int(r): set(f.tolist()) for rows_, lists_ in found for r, f in zip(rows_, lists_)}
    sample = sorted(exact_rows)
    hit = np.array([[t in listed.get(int(r), ()) for t in exact_rows[r]] for r in sample], bool)
    paired = np.array([exact_cosines[r] >= threshold for r in sample], bool)
    pairs = int(paired.sum())
    return neighbours.Recall(len(sample), round(float(hit.mean()), 4) if hit.size else 1.0, pairs,
                             round(float(hit[paired].mean()), 4) if pairs else None)
