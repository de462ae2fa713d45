"""The stages of an extraction as plain functions of a shard's row, run by either executor: Ray
actors and tasks (`catdog.extraction.pipeline`) or this process (`catdog.extraction.local`).

    shard rows ──decode_stage──▶ DecodedRow ──EmbedStage──▶ EmbeddedRow ──write_stage──▶ WrittenRow
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, TypedDict

import numpy as np

from catdog import storage
from catdog.config import DecodeConfig, EmbedConfig
from catdog.errors import CatdogError
from catdog.extraction import webdataset
from catdog.extraction.imagefolder import Shard
from catdog.storage import Location
from catdog.store.features import NO_LABEL, ShardWriter
from catdog.vision import convbase, images


class ShardRow(TypedDict):
    split: str
    name: str  # the shard's output file name
    paths: list[str]  # relative to ROOT (a WebDataset shard: its one tar)
    labels: list[int]
    container: bool  # paths is a tar whose members are the shard's images


class DecodedRow(ShardRow):
    pixels: np.ndarray  # (len(paths), S, S, 3) uint8 of the files that decoded; paths/labels are theirs
    digests: list[str]  # SHA-1 of each decoded file's bytes
    error_paths: list[str]
    error_digests: list[str]  # "" where the file could not be read at all
    error_types: list[str]
    error_messages: list[str]
    decode_s: float  # the stage's time on this shard (wall seconds in the process that ran it)


class EmbeddedRow(TypedDict):
    split: str
    name: str
    paths: list[str]
    labels: list[int]
    features: np.ndarray  # (len(paths), dim) in the stored dtype (with a transform: what it answered)
    digests: list[str]
    error_paths: list[str]
    error_digests: list[str]
    error_types: list[str]
    error_messages: list[str]
    embedder: str  # JSON: the actor's pid, node and devices
    decode_s: float
    embed_s: float  # the model's time on this shard, waiting for the model lock not included


class WrittenRow(TypedDict):
    split: str
    name: str
    node: str  # the Ray node that wrote the shard
    decode_s: float
    embed_s: float
    write_s: float
    rows: int
    errors: int
    paths: list[str]  # what the run's index records: every image of the shard, rows first, then errors
    digests: list[str]
    embedder: str


def shard_row(shard: Shard) -> ShardRow:
    return {"split": shard.split, "name": shard.name, "paths": list(shard.paths), "labels": list(shard.labels),
            "container": shard.container}


def decode_stage(row: ShardRow, *, root: Location, config: DecodeConfig, classes: int = 0, threads: int = 1) -> DecodedRow:
    """A shard's images decoded; `classes`: how many a WebDataset's KEY.cls values may name."""
    began = time.perf_counter()
    locate = storage.Resolver(root)  # a folder's paths are under it; a table's may be URIs on any store
    if row.get("container"):
        paths, labels, decoded = _decode_tar(row["paths"][0], locate, config, classes, threads)
    else:
        paths, labels = list(row["paths"]), [int(y) for y in row["labels"]]
        decoded = images.decode_files([locate(p) for p in paths], config, threads)
    unanswered = [e for e in decoded.errors if e.error == images.StoreError.__name__]
    if unanswered:  # not the images' fault: the shard fails (its images are not recorded as bad)
        raise images.StoreError(unanswered[0].message)
    return {
        "split": row["split"],
        "name": row["name"],
        "paths": [paths[i] for i in decoded.ok],
        "labels": [labels[i] for i in decoded.ok],
        # Arrays, not bytes: Ray sends an array's buffer out of band, straight into the object store,
        # where bytes are copied into the pickle first (a shard's features are 8 MiB at 150 px).
        "pixels": decoded.pixels,
        "digests": [decoded.digests[i] for i in decoded.ok],
        "error_paths": [paths[e.index] for e in decoded.errors],
        "error_digests": [decoded.digests[e.index] for e in decoded.errors],
        "error_types": [e.error for e in decoded.errors],
        "error_messages": [e.message for e in decoded.errors],
        "decode_s": time.perf_counter() - began,
    }


def _decode_tar(tar: str, locate: storage.Resolver, config: DecodeConfig, classes: int,
                threads: int) -> tuple[list[str], list[int], images.Decoded]:
    """A WebDataset tar's samples (paths `tar/KEY`) decoded; a tar that cannot be read to its end
    adds an error row of its own, at `tar/` (its samples read before the damage are kept)."""
    try:
        found, failure = webdataset.samples(locate(tar), classes)
    except OSError as exc:
        raise images.StoreError(f"cannot read {tar}: {storage.store_error(exc)}") from None
    blobs = [s.image for s in found] + ([failure] if failure else [])
    paths = [f"{tar}/{s.key}" for s in found] + ([f"{tar}/"] if failure else [])
    return paths, [s.label for s in found] + [NO_LABEL] * bool(failure), images.decode_blobs(blobs, config, threads)


class EmbedStage:
    """One conv base, built once, applied to whole shards' pixels; with `transform` (a model's head,
    `catdog predict`), the features it makes are turned into what the transform answers (class
    probabilities) before they leave the process."""

    def __init__(self, weights: convbase.Weights, config: EmbedConfig, dtype: str, where: dict,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.base = convbase.ConvBase(weights, config)
        self.config, self.dtype, self.transform = config, dtype, transform
        # Travels with each shard to the driver, which reports which actors and devices did the work.
        self.identity = json.dumps({"pid": os.getpid(), **where, "batch_size": self.base.batch_size,
                                    "niceness": os.getpriority(os.PRIO_PROCESS, 0), "loaded_at": time.time()})

    def __call__(self, row: DecodedRow) -> EmbeddedRow:
        size = self.config.image_size
        pixels = np.asarray(row["pixels"], dtype=np.uint8).reshape(-1, size, size, 3)
        began = time.perf_counter()
        features = self.base.embed(pixels).astype(self.dtype, copy=False)
        if self.transform is not None:
            features = self.transform(features)
        seconds = time.perf_counter() - began
        embedded = {k: v for k, v in row.items() if k != "pixels"}
        return {**embedded, "features": features, "embedder": self.identity, "embed_s": seconds}


def write_stage(row: EmbeddedRow, *, writer: ShardWriter, node: str = "") -> WrittenRow:
    """A shard's rows and errors committed by the writer; `node`: where (the Ray node, or "")."""
    errors = list(zip(row["error_paths"], row["error_types"], row["error_messages"]))
    features = np.asarray(row["features"], dtype=writer.dtype).reshape(-1, writer.width)
    began = time.perf_counter()
    rows = writer.write(row["split"], row["name"], list(row["paths"]), np.asarray(row["labels"]), features, errors, node)
    return {"split": row["split"], "name": row["name"], "node": node, "rows": rows, "errors": len(errors),
            "paths": list(row["paths"]) + list(row["error_paths"]), "digests": list(row["digests"]) + list(row["error_digests"]),
            "embedder": row["embedder"], "decode_s": row["decode_s"], "embed_s": row["embed_s"],
            "write_s": time.perf_counter() - began}


def refused(cause: OSError, writer: ShardWriter) -> CatdogError:
    """A store or disk that refused a write (no space, an error answer), or a store that did not
    answer a read, said in one line; every shard committed before it is kept."""
    what = str(cause) if isinstance(cause, images.StoreError) else f"cannot write to {writer.out}: {storage.store_error(cause)}"
    return CatdogError(f"{what}; the shards written so far are kept: run the same command again to resume")
