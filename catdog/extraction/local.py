"""Extraction in this process: the same stages as on Ray (`catdog.extraction.stages`), one conv base
in this process, the next shard decoding in a thread while the model embeds the last. For small
inputs on a machine without a cluster — a demo, a notebook's few hundred photos, a test — where
Ray's start-up would be most of the job's time; `catdog.extraction.executor` decides which runs."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

from catdog.config import ExtractConfig
from catdog.extraction import stages
from catdog.extraction.feed import Feed
from catdog.extraction.stages import WrittenRow
from catdog.storage import Location
from catdog.store.features import ShardWriter
from catdog.vision import convbase

NODE = "local"  # a written shard's node: this process's machine


def cpus() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def extract_shards(shards: Feed, root: Location, config: ExtractConfig, weights: convbase.Weights,
                   writer: ShardWriter, transform=None) -> Iterator[WrittenRow]:
    """decode -> embed -> write over the shards in this process; yields each shard as it is written.
    The model keeps TensorFlow's own thread settings (this process is the caller's: its threads are
    not catdog's to set); decoding takes half the cores, as in a Ray CPU actor."""
    decode = {"root": root, "config": config.decode, "classes": len(config.class_names), "threads": max(1, cpus() // 2)}
    where = {"node": NODE, "ray_gpu_ids": [], "intra_op_threads": cpus()}  # TensorFlow's default: a thread per core
    embed = stages.EmbedStage(weights, config.embed, config.dtype, where, transform)
    with ThreadPoolExecutor(1, thread_name_prefix="catdog-decode") as pool:
        def decoding(shard) -> Future | None:
            return pool.submit(stages.decode_stage, stages.shard_row(shard), **decode) if shard is not None else None

        pending = decoding(shards.next())
        try:
            while pending is not None:
                try:
                    decoded = pending.result()
                    pending = decoding(shards.next())  # the next shard decodes while this one is embedded
                    written = stages.write_stage(embed(decoded), writer=writer, node=NODE)
                except OSError as exc:  # a store's or disk's refusal: one line, as on Ray
                    raise stages.refused(exc, writer) from None
                yield written
        finally:
            if pending is not None:
                pending.cancel()
