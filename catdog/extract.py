"""The extraction job: scan -> shard -> decode (Ray tasks) -> embed (Ray actors) -> write Parquet.

Ray Data runs the three stages as one streaming pipeline over shard rows, so decoding overlaps
inference, back-pressure keeps memory bounded, failed tasks are retried and dead actors restarted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from tqdm import tqdm

import catdog
from catdog import dataset, features, images, manifest, model
from catdog.config import ExtractConfig
from catdog.errors import CatdogError

MAX_CPUS_PER_ACTOR = 8  # past this a single VGG16 gains little from more threads; run another actor
# All actors load their model before the first shard is dispatched (else the first one up takes
# everything small); generous, since an autoscaler may first have to start GPU nodes.
ACTOR_START_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Resources:
    num_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    io_cpus: float  # per decode/write task
    io_tasks: int | None  # cap on concurrent decode/write tasks; needed when they reserve no CPU


@dataclass(frozen=True)
class Summary:
    out: str
    images: int  # rows in the dataset now
    errors: int  # error rows in the dataset now
    processed: int  # images (good or bad) handled by this run
    resumed_shards: int  # shards already committed before this run
    embedders: tuple[dict, ...]  # the actors that embedded this run's shards, with their devices
    seconds: float  # this run's pipeline time, actor start-up included
    steady_images_per_second: float  # after the first shard is out: model loaded, pipeline full
    startup_seconds: float  # Ray start/connect and weights before the pipeline

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [
            f"images      {self.images}",
            f"errors      {self.errors}",
            f"this run    {self.processed} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s"
            + (f", {self.steady_images_per_second:.1f} after warm-up)" if self.steady_images_per_second else ")"),
            f"resumed     {self.resumed_shards} shards already committed",
            f"actors      {len(self.embedders)} ({_devices(self.embedders)})",
            f"wall time   {self.seconds + self.startup_seconds:.1f} s (start-up {self.startup_seconds:.1f} s)",
            f"output      {self.out}",
        ]


def _devices(embedders: tuple[dict, ...]) -> str:
    gpus = sorted({g for e in embedders for g in e["ray_gpu_ids"]})
    return f"GPUs {', '.join(gpus)}" if gpus else f"CPU, {sum(e['intra_op_threads'] for e in embedders)} threads"


def plan_resources(config: ExtractConfig, total: dict, largest_node_cpus: float) -> Resources:
    """Actor count and sizes: one actor per GPU by default, else CPU actors filling the cluster."""
    cpus, gpus = float(total.get("CPU", 1)), float(total.get("GPU", 0))
    gpus_per_actor = config.gpus_per_actor if config.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    if gpus_per_actor > 0:
        cpus_per_actor = config.cpus_per_actor if config.cpus_per_actor is not None else 1.0
        num_actors = config.num_actors or max(1, int(gpus // gpus_per_actor))
        # On GPU nodes the CPUs left over decode; the model waits on them otherwise.
        return Resources(num_actors, cpus_per_actor, gpus_per_actor, io_cpus=1.0, io_tasks=None)
    if config.cpus_per_actor is not None:
        cpus_per_actor = config.cpus_per_actor
    elif config.num_actors:
        cpus_per_actor = max(1.0, math.floor(cpus / config.num_actors))
    else:
        cpus_per_actor = float(max(1, min(MAX_CPUS_PER_ACTOR, int(largest_node_cpus))))
    num_actors = config.num_actors or max(1, int(cpus // cpus_per_actor))
    # CPU actors own every core; decoding (a few % of VGG16's cost) shares them unreserved.
    return Resources(num_actors, cpus_per_actor, 0.0, io_cpus=0.0, io_tasks=max(1, num_actors))


def feature_metadata(config: ExtractConfig, image_set: dataset.ImageSet, weights: model.Weights) -> dict:
    return {
        "model": "VGG16 conv base (keras.applications.VGG16, include_top=False)",
        "weights": weights.identity,
        "input_size": [config.image_size, config.image_size, 3],
        "preprocess": config.preprocess,
        "interpolation": config.interpolation,
        "feature_shape": list(model.feature_shape(config.image_size)),
        "feature_dim": model.feature_dim(config.image_size),
        "flatten_order": "C",  # numpy reshape(n, -1) of the (n, h, w, c) Keras output
        "dtype": config.dtype,
        "precision": config.precision,
        "classes": list(image_set.classes),
        "layout": image_set.layout,
        "catdog_version": catdog.__version__,
        "keras_version": model.keras_version(),
    }


def compat_settings(config: ExtractConfig, metadata: dict, image_root: str) -> dict:
    """What must match for a later run to continue an OUT (version numbers may move on)."""
    skip = {"catdog_version", "keras_version"}
    pinned = {k: v for k, v in metadata.items() if k not in skip}
    return {**pinned, "root": image_root, "shard_size": config.shard_size, "max_pixels": config.max_pixels}


def run(config: ExtractConfig) -> Summary:
    started = time.perf_counter()
    if config.address not in (None, "auto", "local"):
        _check_reachable(config.address)
    image_set = dataset.scan(config.root)
    shards = dataset.plan_shards(image_set, config.shard_size)
    weights = model.resolve_weights(config)
    metadata = feature_metadata(config, image_set, weights)
    compat = compat_settings(config, metadata, image_set.root)
    with manifest.locked(config.out):
        manifest.prepare(config.out, compat, config.overwrite)
        done = features.committed(config.out)
        _refuse_foreign_shards(config.out, done, shards)
        pending = [s for s in shards if (s.split, s.name) not in done]
        record = {
            "catdog_version": catdog.__version__,
            "compat": compat,
            "features": metadata,
            "config": dataclasses.asdict(config),
            "plan": {"images": len(image_set), "shards": len(shards), "digest": dataset.plan_digest(shards)},
            "status": "running",
        }
        manifest.write(config.out, record)
        with ray_session(config.address):
            startup = time.perf_counter() - started
            began = time.perf_counter()
            processed, steady, embedders = _process(config, image_set, pending, weights, metadata) if pending else (0, 0.0, ())
            seconds = time.perf_counter() - began
        summary = Summary(
            out=config.out,
            images=_count(config.out, features.FEATURES_DIR),
            errors=_count(config.out, features.ERRORS_DIR),
            processed=processed,
            resumed_shards=len(shards) - len(pending),
            embedders=embedders,
            seconds=seconds,
            steady_images_per_second=steady,
            startup_seconds=startup,
        )
        totals = {"images": summary.images, "errors": summary.errors, "shards": len(shards), "actors": list(embedders)}
        manifest.write(config.out, {**record, "status": "complete", "totals": totals})
        manifest.clear_tmp(config.out)
    return summary


def _refuse_foreign_shards(out: str, done: set, shards: list[dataset.Shard]) -> None:
    planned = {(s.split, s.name) for s in shards}
    foreign = sorted(done - planned)
    if foreign:
        split, name = foreign[0]
        raise CatdogError(
            f"{out} holds shards of a different file listing (e.g. split={split}/{name}): "
            "the input folder changed since the first run; use --overwrite or another --out"
        )


def _count(out: str, kind: str) -> int:
    return features.dataset(out, kind).count_rows() if features.committed(out, kind) else 0


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the given cluster (or RAY_ADDRESS, as under `ray job submit`), else start a local Ray."""
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CatdogError(f"cannot connect to Ray at {address}: {str(exc).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds: ray.init keeps retrying an address where nothing listens for minutes."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or hostport, int(port or 6379)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise CatdogError(f"cannot reach Ray at {address}: {getattr(exc, 'strerror', None) or exc}") from None


def cluster_resources() -> tuple[dict, float]:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=1)
    return ray.cluster_resources(), largest


def _process(
    config: ExtractConfig, image_set: dataset.ImageSet, pending: list, weights: model.Weights, metadata: dict
) -> tuple[int, float, tuple[dict, ...]]:
    import ray

    resources = plan_resources(config, *cluster_resources())
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one images-level bar below instead of one per operator
    context.execution_options.preserve_order = False
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    schema = features.feature_schema(metadata["feature_dim"], config.dtype, metadata)
    pipeline = (
        ray.data.from_items([s.to_row() for s in pending], override_num_blocks=len(pending))
        .map(
            images.decode_shard,
            fn_kwargs={
                "root": config.root,
                "size": config.image_size,
                "interpolation": config.interpolation,
                "max_pixels": config.max_pixels,
            },
            num_cpus=resources.io_cpus,
            compute=ray.data.TaskPoolStrategy(size=resources.io_tasks),
        )
        .map(
            model.Embedder,
            fn_constructor_kwargs={"weights": ray.put(weights.data), "config": config, "cpus": resources.cpus_per_actor},
            compute=ray.data.ActorPoolStrategy(size=resources.num_actors),
            num_cpus=resources.cpus_per_actor,
            num_gpus=resources.gpus_per_actor,
        )
        .map(
            features.write_shard,
            fn_kwargs={"out": config.out, "schema": schema, "classes": image_set.classes},
            num_cpus=resources.io_cpus,
            compute=ray.data.TaskPoolStrategy(size=resources.io_tasks),
        )
    )
    total = sum(len(s.paths) for s in pending)
    processed, peaks, first, shards = 0, {}, None, 0
    with tqdm(total=total, unit="img", desc="extract", disable=not config.progress, file=sys.stderr) as bar:
        for row in pipeline.iter_rows():
            count = int(row["rows"]) + int(row["errors"])
            processed += count
            rss, uss = peaks.get(row["embedder"], (0, 0))
            peaks[row["embedder"]] = (max(rss, int(row["embedder_rss"])), max(uss, int(row["embedder_uss"])))
            bar.update(count)
            shards += 1
            first = first or (time.perf_counter(), processed)
    steady_seconds = time.perf_counter() - first[0]
    # A rate needs a few shards after the first; with fewer there is no steady state to speak of.
    steady = (processed - first[1]) / steady_seconds if shards >= 4 and steady_seconds > 0 else 0.0
    return processed, steady, tuple({**json.loads(e), "max_rss": rss, "max_uss": uss} for e, (rss, uss) in sorted(peaks.items()))
