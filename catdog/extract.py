"""The `catdog extract` job: plan (scan, shard, weights, what is already done), run the Ray
pipeline over the pending shards, summarise. The data path itself is `catdog.pipeline`."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

import catdog
from catdog import cluster, convbase, features, imagefolder, manifest, pipeline, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.imagefolder import ImageSet, Shard
from catdog.storage import Location

STEADY_MIN_SHARDS = 4  # a rate needs a few shards after the first; with fewer there is no steady state


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
        steady = f", {self.steady_images_per_second:.1f} after warm-up" if self.steady_images_per_second else ""
        return [
            f"images      {self.images}",
            f"errors      {self.errors}",
            f"this run    {self.processed} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s{steady})",
            f"resumed     {self.resumed_shards} shards already committed",
            f"actors      {len(self.embedders)} ({cluster.devices(self.embedders)})",
            f"wall time   {self.seconds + self.startup_seconds:.1f} s (start-up {self.startup_seconds:.1f} s)",
            f"output      {self.out}",
        ]


@dataclass(frozen=True)
class Run:
    """What this run has to do: the listing, its shards, the weights, and the shards still pending."""

    image_set: ImageSet
    shards: list[Shard]
    pending: list[Shard]
    weights: convbase.Weights
    metadata: dict


@dataclass(frozen=True)
class Progress:
    processed: int
    steady_images_per_second: float
    embedders: tuple[dict, ...]
    writers: dict[str, str]  # "split/name" of each shard written -> the Ray node that wrote it


def run(config: ExtractConfig) -> Summary:
    started = time.perf_counter()
    cluster.check_address(config.address)
    root, out = storage.resolve(config.root), storage.resolve(config.out)
    image_set = imagefolder.scan(root)
    shards = imagefolder.plan_shards(image_set, config.shard_size)
    with manifest.locked(out), ThreadPoolExecutor(1, thread_name_prefix="weights") as pool:
        # The weights (TensorFlow's import, building VGG16) and Ray's start each take seconds: overlap them.
        making_weights = pool.submit(convbase.resolve_weights, config.weights, config.seed, config.image_size)
        with cluster.ray_session(config.address):
            plan, record = _plan(config, root, out, image_set, shards, making_weights.result())
            startup = time.perf_counter() - started
            began = time.perf_counter()
            progress = _embed_pending(config, root, out, plan) if plan.pending else Progress(0, 0.0, (), {})
            seconds = time.perf_counter() - began
        summary = Summary(
            out=config.out,
            images=_count(out, features.FEATURES_DIR),
            errors=_count(out, features.ERRORS_DIR),
            processed=progress.processed,
            resumed_shards=len(shards) - len(plan.pending),
            embedders=progress.embedders,
            seconds=seconds,
            steady_images_per_second=progress.steady_images_per_second,
            startup_seconds=startup,
        )
        totals = {"images": summary.images, "errors": summary.errors, "shards": len(shards), "actors": list(progress.embedders)}
        written = _writers(out, shards, {**record["written_by"], **progress.writers})
        manifest.write(out, {**record, "status": "complete", "totals": totals, "written_by": written})
        manifest.clear_tmp(out)
    return summary


def _plan(config: ExtractConfig, root: Location, out: Location, image_set: ImageSet, shards: list[Shard],
          weights: convbase.Weights) -> tuple[Run, dict]:
    """Check OUT against this run's settings, find what is already done, and mark OUT as running."""
    metadata = features.feature_metadata(config, image_set, weights.identity)
    compat = features.compat_settings(config, metadata, root)
    manifest.prepare(out, compat, config.overwrite)
    done = features.committed(out)
    _refuse_foreign_shards(out, done, shards)
    earlier = (manifest.read(out) or {}).get("written_by", {})
    plan = Run(image_set, shards, [s for s in shards if (s.split, s.name) not in done], weights, metadata)
    record = {
        "catdog_version": catdog.__version__,
        "compat": compat,
        "features": metadata,
        "config": dataclasses.asdict(config),
        "plan": {"images": len(image_set), "shards": len(shards), "digest": imagefolder.plan_digest(shards)},
        "status": "running",
        "written_by": {k: v for k, v in earlier.items() if tuple(k.split("/", 1)) in done},
    }
    manifest.write(out, record)
    return plan, record


def _refuse_foreign_shards(out: Location, done: set, shards: list[Shard]) -> None:
    planned = {(s.split, s.name) for s in shards}
    foreign = sorted(done - planned)
    if foreign:
        split, name = foreign[0]
        raise CatdogError(
            f"{out} holds shards of a different file listing (e.g. split={split}/{name}): "
            "the input folder changed since the first run; use --overwrite or another --out"
        )


def _writers(out: Location, shards: list[Shard], known: dict[str, str]) -> dict[str, str]:
    """Which node wrote each shard: this run's and earlier runs' records, and for shards an
    interrupted run committed without recording them, the node their file names."""
    done = features.committed(out)
    keys = {f"{s.split}/{s.name}": (s.split, s.name) for s in shards if (s.split, s.name) in done}
    return {key: known.get(key) or features.written_by(out, *where) for key, where in sorted(keys.items())}


def _count(out: Location, kind: str) -> int:
    return features.dataset(out, kind).count_rows() if features.committed(out, kind) else 0


def _embed_pending(config: ExtractConfig, root: Location, out: Location, plan: Run) -> Progress:
    """Run the pipeline over the pending shards with a progress bar over images; gather the actors' reports."""
    resources = cluster.plan_resources(config, cluster.cluster_size())
    writer = features.ShardWriter(out, features.feature_schema(plan.metadata), plan.image_set.classes)
    where = cluster.placement(root.is_local, out.is_local, config.shared_fs)
    rows = pipeline.extract_shards(plan.pending, root, config, plan.weights.data, writer, resources, where)
    total = sum(len(s.paths) for s in plan.pending)
    processed, peaks, first, shards, writers = 0, {}, None, 0, {}
    with tqdm(total=total, unit="img", desc="extract", disable=not config.progress, file=sys.stderr) as bar:
        for row in rows:
            count = int(row["rows"]) + int(row["errors"])
            processed += count
            rss, uss = peaks.get(row["embedder"], (0, 0))
            peaks[row["embedder"]] = (max(rss, int(row["embedder_rss"])), max(uss, int(row["embedder_uss"])))
            bar.update(count)
            writers[f"{row['split']}/{row['name']}"] = row["node"]
            shards += 1
            first = first or (time.perf_counter(), processed)
    steady_seconds = time.perf_counter() - first[0]
    steady = (processed - first[1]) / steady_seconds if shards >= STEADY_MIN_SHARDS and steady_seconds > 0 else 0.0
    embedders = tuple({**json.loads(e), "max_rss": rss, "max_uss": uss} for e, (rss, uss) in sorted(peaks.items()))
    return Progress(processed, steady, embedders, writers)
