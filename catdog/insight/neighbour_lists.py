"""Each image's neighbour list, kept between runs of `similar` (neighbours.parquet in the report
folder) so that a run after an incremental extract searches only what changed.

A row is known by its (split, path) and a digest of its vector. Rows added since the last run, and
rows whose vector changed, are searched against every row; a kept row whose list named a row since
removed or changed is searched again; every other kept row keeps its list, merged with its best
matches among the added rows. With exact lists this equals a full run: a kept row's best `top` among
the old rows are still its best among those that remain, and the added rows are all compared.
The work is (added + changed + searched again) x rows, not rows².
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catdog import storage
from catdog.insight import neighbours

FILE = "neighbours.parquet"
FULL_ABOVE = 0.2  # share of rows changed above which a full search is as cheap: run one


@dataclass(frozen=True)
class Lists:
    keys: list[tuple[str, str]]  # (split, path) of each row
    digests: np.ndarray  # (n,) uint64 digests of the vectors
    indices: np.ndarray  # (n, top) row numbers of each row's neighbours, nearest first
    similarity: np.ndarray  # (n, top) their cosines
    settings: dict  # what the lists depend on beyond the vectors (top, method, probes, ...)


@dataclass(frozen=True)
class Update:
    """What an incremental run searched."""

    kept: int
    added: int  # new rows and rows whose vector changed
    removed: int  # rows gone, and the old versions of changed rows
    searched_again: int  # kept rows whose list named a removed row


def digests(X: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each row: it tells a changed vector from the one stored under the same key."""
    return np.frombuffer(b"".join(hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in X), np.uint64)


def read(folder: storage.Location, settings: dict) -> Lists | None:
    """The lists a previous run left in `folder` (local or on a store), if made with the same settings."""
    where = folder.join(FILE)
    if where.kind() != pafs.FileType.File:
        return None
    table = storage.small_reads_retried(lambda: pq.read_table(where.path, filesystem=where.fs), where.is_object_store)
    saved = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k.startswith(b"catdog.")}
    if saved != _metadata(settings):
        return None
    top = len(table.column("indices")[0]) if len(table) else 0
    return Lists(list(zip(table.column("split").to_pylist(), table.column("path").to_pylist())),
                 table.column("digest").to_numpy(),
                 _matrix(table.column("indices"), top, np.int64), _matrix(table.column("similarity"), top, np.float32),
                 settings)


def write(folder: str, lists: Lists) -> None:
    """Into a local folder (the report's, uploaded with the rest)."""
    splits, paths = zip(*lists.keys) if lists.keys else ((), ())
    top = lists.indices.shape[1]
    table = pa.table({
        "split": pa.array(splits, pa.string()), "path": pa.array(paths, pa.string()),
        "digest": pa.array(lists.digests, pa.uint64()),
        "indices": pa.FixedSizeListArray.from_arrays(pa.array(lists.indices.ravel(), pa.int64()), top),
        "similarity": pa.FixedSizeListArray.from_arrays(pa.array(lists.similarity.ravel(), pa.float32()), top),
    }).replace_schema_metadata(_metadata(lists.settings))
    pq.write_table(table, os.path.join(folder, FILE))


def update(previous: Lists, keys: list[tuple[str, str]], digest: np.ndarray, X: np.ndarray, top: int
           ) -> tuple[np.ndarray, np.ndarray, Update] | None:
    """The current rows' lists from the previous ones (X: unit vectors), or None when so much changed
    that a full search is as cheap, or the lists are too short to be updated."""
    n = len(keys)
    if previous.indices.shape[1] != top or n <= top:
        return None
    position = {key: i for i, key in enumerate(previous.keys)}
    if len(position) < len(previous.keys) or len(set(keys)) < n:  # a key twice: rows cannot be matched by key
        return None
    old = np.array([position.get(key, -1) for key in keys], np.int64)
    kept = (old >= 0) & (previous.digests[np.maximum(old, 0)] == digest)
    now = np.full(len(previous.keys), -1, np.int64)  # an old row's number now, -1: removed or changed
    now[old[kept]] = np.flatnonzero(kept)
    carried = np.zeros((n, top), np.int64)
    carried[kept] = now[previous.indices[old[kept]]]
    stale = kept & (carried < 0).any(axis=1)
    added = np.flatnonzero(~kept)
    again = np.flatnonzero(~kept | stale)
    if len(again) > FULL_ABOVE * n:
        return None
    indices, similarity = carried, np.zeros((n, top), np.float32)
    similarity[kept] = previous.similarity[old[kept]]
    if len(again):
        found, cosines = neighbours.exact(X[again], X, top + 1)
        indices[again], similarity[again] = neighbours.without_self(found, cosines, top, again)
    merge = np.flatnonzero(kept & ~stale)
    if len(added) and len(merge):
        found, cosines = neighbours.exact(X[merge], X[added], min(top, len(added)))
        both = np.concatenate([indices[merge], added[found]], axis=1)
        both_similarity = np.concatenate([similarity[merge], cosines], axis=1)
        best = np.argsort(-both_similarity, axis=1, kind="stable")[:, :top]
        indices[merge] = np.take_along_axis(both, best, 1)
        similarity[merge] = np.take_along_axis(both_similarity, best, 1)
    update = Update(int(kept.sum()), len(added), len(previous.keys) - int(kept.sum()), int(stale.sum()))
    return indices, similarity, update


def find(X: np.ndarray, keys: list[tuple[str, str]], report: storage.Location, local: str, *, top: int,
         method: str = "auto", probes: int = 16, pca_dims: int | None = None, full: bool = False, threshold: float = 1.0):
    """Each row's `top` neighbours (X: unit vectors; method, probes, pca_dims as `neighbours.search`): updated from
    the lists a previous run left in `report` when only a few rows changed, else searched; saved into
    `local` (the report's local folder) for the next run either way. Returns (indices, cosines, the
    search or None, the update or None)."""
    digest = digests(X)
    settings = {"top": top, "method": method, "probes": probes, "pca_dims": pca_dims}  # what the lists depend on
    previous = None if full else read(report, settings)
    updated = update(previous, keys, digest, X, top) if previous else None
    search, changes = None, None
    if updated:
        indices, similarity, changes = updated
    else:
        indices, similarity, search = neighbours.search(X, top, method=method, probes=probes, pca_dims=pca_dims,
                                                        threshold=threshold)
    write(local, Lists(keys, digest, indices, similarity, settings))
    return indices, similarity, search, changes


def _matrix(column: pa.ChunkedArray, top: int, dtype) -> np.ndarray:
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype).reshape(-1, top)


def _metadata(settings: dict) -> dict[str, str]:
    return {f"catdog.{k}": str(v) for k, v in sorted(settings.items())}
