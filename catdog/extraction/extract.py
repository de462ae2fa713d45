"""The `catdog extract` job: plan (scan, compare with what OUT holds, shard, weights), run the Ray
pipeline over the pending shards, commit, summarise. The data path itself is `catdog.extraction.pipeline`.

A first run writes its shards straight into OUT (resumable shard by shard) and the index last.
Every later run is incremental: it extracts only the images added or changed since, stages their
shards, and commits them with the removal of superseded rows as one generation (`catdog.store.generation`).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from tqdm import tqdm

from catdog import cluster, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import executor, imagefolder, listing, local, metadata, pipeline
from catdog.extraction.cost import Cost, Estimate
from catdog.extraction.feed import Feed
from catdog.extraction.imagefolder import Shard, Source
from catdog.extraction.planner import Planner, Run
from catdog.storage import Location
from catdog.store import features, generation, index, layout, manifest, predictions, verify
from catdog.store.lock import locked
from catdog.store.manifest import Manifest
from catdog.version import __version__
from catdog.vision import convbase

STEADY_MIN_SHARDS = 4  # a rate needs a few shards after the first; with fewer there is no steady state
ESTIMATE_SHARDS_PER_ACTOR = 2  # --estimate's sample: at least this many shards per actor (and a steady rate)


@dataclass(frozen=True)
class Answering:
    """A predictions run (`catdog predict MODEL ROOT --out DIR`): the model's head applied to the
    features where they are made, its answers written instead of the features."""

    transform: Callable[[np.ndarray], np.ndarray]  # (n, dim) features -> (n, K) probabilities; picklable
    model: dict  # what the model is (recorded with the predictions and pinning DIR like any setting)
    classes: tuple[str, ...]  # the model's classes, the order of the probabilities


@dataclass(frozen=True)
class ExtractResult:
    out: str
    images: int  # rows in the dataset now
    errors: int  # error rows in the dataset now
    processed: int  # images (good or bad) handled by this run
    resumed_shards: int  # shards already committed before this run
    embedders: tuple[dict, ...]  # the actors that embedded this run's shards, with their devices
    seconds: float  # this run's pipeline time, actor start-up included
    steady_images_per_second: float  # from the second shard out: model loaded, pipeline full
    startup_seconds: float  # Ray start/connect and weights before the pipeline
    changes: str = ""  # an incremental run: what changed in ROOT since the last one
    repaired: tuple[str, ...] = ()  # with repair: the damaged or missing files (their images were extracted again)
    precision: str = ""  # with --precision auto: what it chose and why
    timeline: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds from the process start to each mark
    cost: Cost | None = None  # time per stage, the bound, CPU/GPU-seconds per 1,000 images (None: nothing ran)
    executor: str = ""  # which ran the stages, and why: "ray (a Ray address)", "local (41 images, ...)"

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
            *([f"changes     {self.changes}"] if self.changes else []),
            *([f"repaired    {len(self.repaired)} damaged or missing files, their images extracted again"] if self.repaired else []),
            *([f"precision   {self.precision}"] if self.precision else []),
            *([f"executor    {self.executor}"] if self.executor else []),
            f"actors      {len(self.embedders)} ({cluster.devices(self.embedders)})" if self.embedders
            else "actors      none (nothing to extract)",
            f"wall time   {self.seconds + self.startup_seconds:.1f} s (start-up {self.startup_seconds:.1f} s)",
            *([f"timeline    {_timeline(self.timeline)} (from the process start)"] if self.timeline else []),
            *(self.cost.lines() if self.cost else []),
            f"output      {self.out}",
        ]


TIMELINE = {"ray": "Ray up", "weights": "weights", "pipeline": "pipeline", "model_loaded": "model loaded",
            "first_shard": "first shard", "listed": "listed", "last_shard": "last shard", "committed": "committed"}


def _timeline(marks: dict[str, float]) -> str:
    return ", ".join(f"{name} {marks[key]:.1f} s" for key, name in TIMELINE.items() if key in marks)


@dataclass(frozen=True)
class Progress:
    processed: int
    steady_images_per_second: float
    embedders: tuple[dict, ...]
    writers: dict[str, str]  # "split/name" of each shard written -> the Ray node that wrote it
    marks: dict[str, float]  # wall-clock times: first and last shard seen
    stages: dict[str, float]  # decode, embed and write seconds summed over this run's shards


NOTHING = Progress(0, 0.0, (), {}, {}, {})


def run(config: ExtractConfig, answering: Answering | None = None) -> ExtractResult:
    """Extract ROOT's features into OUT; with `answering`, write a model's predictions instead."""
    started = time.perf_counter()
    marks = {}
    cluster.check_address(config.address)
    root, out = storage.resolve(config.root), storage.resolve(config.out)
    source = listing.open_source(config)
    opened = time.perf_counter() - started
    if not config.from_table:
        _refuse_out_in_root(root, out)
    with locked(out), ThreadPoolExecutor(1, thread_name_prefix="weights") as pool:
        # The weights (TensorFlow's import, building the network) and Ray's start each take seconds: overlap them.
        making_weights = pool.submit(_timed, marks, "weights", _weights, config)
        chosen = executor.choose(config, source.entries)
        with cluster.ray_session(config.address) if chosen.name == "ray" else nullcontext():
            if chosen.name == "ray":
                marks["ray"] = time.time()
            size = cluster.cluster_size() if chosen.name == "ray" else _this_machine()
            resources = cluster.plan_resources(config, size) if chosen.name == "ray" else _local_resources()
            config, precision = _resolve_precision(config, resources)
            previous = manifest.read(out)  # under the lock: unchanged until _plan marks OUT as running
            config = _resolve_shard_size(config, resources, previous)
            with _writing(out):
                plan, record = _plan(config, root, out, source, making_weights.result(), precision, previous, answering)
            planner = Planner(plan, config.shard_size, out)
            try:
                with Feed(planner.shards()) as feed:
                    marks["pipeline"] = time.time()
                    began = time.perf_counter()
                    startup = began - started
                    progress = _embed_pending(config, plan, feed, planner, resources, chosen.name, answering) \
                        if feed.first() else NOTHING
                    seconds = time.perf_counter() - began
                committing = time.perf_counter()
                with _writing(out):
                    record, written = _commit(out, plan, record, planner)
                committed = time.perf_counter() - committing
            finally:
                planner.close()
        spent = _cost(progress, (opened + planner.listing_seconds, opened), committed, time.perf_counter() - started,
                      resources, size)
        marks.update(progress.marks, committed=time.time(), **({"listed": planner.listed_at} if planner.listed_at else {}))
        images_now, errors_now = written or index.counts(out)  # the index just written was counted as it was
        summary = ExtractResult(
            out=config.out,
            images=images_now,
            errors=errors_now,
            processed=progress.processed,
            resumed_shards=planner.resumed,
            embedders=progress.embedders,
            seconds=seconds,
            steady_images_per_second=progress.steady_images_per_second,
            startup_seconds=startup,
            changes=str(planner.changes) if planner.changes else "",
            repaired=plan.repaired,
            precision=precision,
            timeline=_since_process_start(marks, progress.embedders),
            cost=spent if progress.processed else None,
            executor=f"{chosen.name} ({chosen.why})",
        )
        done = features.committed(out, plan.rows)  # listed once: on an object store each listing is requests
        totals = {"images": summary.images, "errors": summary.errors, "shards": len(done), "actors": list(progress.embedders)}
        written = _writers(out, done, {**record.written_by, **progress.writers}, plan.rows)
        with _writing(out):
            manifest.write(out, record.replace(status="complete", totals=totals, written_by=written, timeline=summary.timeline,
                                               plan=planner.digest.record(), cost=spent.record() if summary.cost else {}))
            manifest.clear_tmp(out)
    return summary


def estimate(config: ExtractConfig) -> Estimate:
    """Run a sample of the shards (spread over the input) as `run` would, into a temporary folder
    rather than OUT, and project the whole input's wall time and CPU/GPU-hours on this cluster."""
    started = time.perf_counter()
    cluster.check_address(config.address)
    source = listing.open_source(config)
    with cluster.ray_session(config.address), tempfile.TemporaryDirectory(prefix="catdog-estimate-") as scratch:
        size = cluster.cluster_size()
        resources = cluster.plan_resources(config, size)
        config, _ = _resolve_precision(config, resources)
        config = _resolve_shard_size(config, resources, None)
        weights = _weights(config)
        wanted = max(STEADY_MIN_SHARDS + 1, ESTIMATE_SHARDS_PER_ACTOR * resources.num_actors)
        sample, total = _sample(imagefolder.cut_shards(source.entries(), config.shard_size), wanted, config.seed)
        listed = time.perf_counter() - started
        plan = Run(source, storage.resolve(scratch), 1, False, weights, metadata.feature_metadata(config, source, weights.identity))
        planner = Planner(plan, config.shard_size, plan.target, only=sample)
        try:
            with Feed(planner.shards()) as feed:
                feed.first()
                progress = _embed_pending(config.replace(progress=False), plan, feed, planner, resources)
        finally:
            planner.close()
        spent = _cost(progress, (listed, listed), 0.0, time.perf_counter() - started, resources, size)
    return Estimate(total, spent, len(sample))


def _sample(shards: Iterable[Shard], wanted: int, seed: int) -> tuple[list[Shard], int]:
    """`wanted` shards drawn evenly at random from the listing as it streams (reservoir sampling: the
    listing is never whole in memory), in listing order; and the number of images listed."""
    rng, chosen, images = random.Random(seed), [], 0
    for number, shard in enumerate(shards):
        images += len(shard.paths)
        if number < wanted:
            chosen.append((number, shard))
        elif (slot := rng.randrange(number + 1)) < wanted:
            chosen[slot] = (number, shard)
    return [shard for _, shard in sorted(chosen, key=lambda c: c[0])], images


@contextmanager
def _writing(out: Location) -> Iterator[None]:
    """The driver's own writes to OUT (manifest, index, a commit): a disk or store that refuses one
    (full, read-only, an error answer) is one line; what was committed stays, and a re-run resumes."""
    try:
        yield
    except OSError as exc:
        raise CatdogError(f"cannot write to {out}: {storage.store_error(exc)}; the shards written so far are kept: "
                          "run the same command again to resume") from None


def _resolve_precision(config: ExtractConfig, resources: cluster.Resources) -> tuple[ExtractConfig, str]:
    """--precision auto becomes the actors' fast path; the choice is recorded like any setting, so a
    re-run that would choose otherwise (other devices) is refused rather than mixing precisions."""
    if config.precision != "auto":
        return config, ""
    chosen, why = convbase.auto_precision(resources.gpus_per_actor > 0, convbase.cpu())
    return config.replace(precision=chosen), f"{chosen} (auto: {why})"


def _resolve_shard_size(config: ExtractConfig, resources: cluster.Resources, previous: Manifest | None) -> ExtractConfig:
    """No --shard-size: the size of the run OUT holds, so that it resumes or grows on any devices,
    else the default for the actors' devices. Shard size never changes a feature, only the files."""
    if config.shard_size is not None:
        return config
    earlier = None if config.overwrite or previous is None else previous.compat.get("shard_size")
    return config.replace(shard_size=earlier or cluster.default_shard_size(resources))


def _cost(progress: Progress, listing: tuple[float, float], committed: float, wall: float, resources: cluster.Resources,
          size: cluster.ClusterSize) -> Cost:
    """`listing`: (the listing's time, the part of it before any shard could start: the rest overlaps
    the pipeline's work)."""
    loaded = min((e["loaded_at"] for e in progress.embedders if "loaded_at" in e), default=None)
    last = progress.marks.get("last_shard")
    working = last - loaded if loaded and last else 0.0
    stages = {"listing": listing[0], "start-up": max(0.0, wall - listing[1] - committed - working), **progress.stages,
              "commit": committed}
    return Cost(stages, working, wall, progress.processed, resources.num_actors, size.cpus,
                resources.num_actors * resources.gpus_per_actor, progress.steady_images_per_second)


def _this_machine() -> cluster.ClusterSize:
    cores = local.cpus()
    return cluster.ClusterSize(float(cores), 0.0, float(cores))


def _local_resources() -> cluster.Resources:
    """The one conv base in this process, on its cores; the next shard decoding beside it."""
    return cluster.Resources(1, float(local.cpus()), 0.0, decode_cpus=0.0, shards_in_flight=2)


def _weights(config: ExtractConfig) -> convbase.Weights:
    weights = convbase.resolve_weights(config.weights, config.seed, config.image_size, config.backbone, config.pooling,
                                       config.weights_mirror)
    convbase.feature_shape(config.image_size, config.backbone, config.pooling)  # other than VGG: built once for it
    return weights


def _timed(marks: dict[str, float], name: str, fn, *args):
    result = fn(*args)
    marks[name] = time.time()
    return result


def _since_process_start(marks: dict[str, float], embedders: tuple[dict, ...]) -> dict[str, float]:
    """The run's marks (and the first actor's model loaded: the first shard waits on it, not on the
    others, which ActorPool starts on as they come up) in seconds from this process's start: what the
    user waited for, Python's imports included."""
    import psutil

    loaded = [e["loaded_at"] for e in embedders if "loaded_at" in e]
    marks = {**marks, **({"model_loaded": min(loaded)} if loaded else {})}
    start = psutil.Process().create_time()
    return {k: round(marks[k] - start, 2) for k in TIMELINE if k in marks}


def _plan(config: ExtractConfig, root: Location, out: Location, source: Source, weights: convbase.Weights,
          precision_auto: str, previous: Manifest | None, answering: Answering | None = None) -> tuple[Run, Manifest]:
    """Check OUT against this run's settings (`previous`: its manifest), finish a commit a killed run
    left, and mark OUT as running."""
    feature_meta = metadata.feature_metadata(config, source, weights.identity)
    if answering is not None:  # pinned like every setting: another model's answers are not mixed in
        feature_meta["predictions"] = answering.model
    compat = metadata.compat_settings(config, feature_meta, root)
    manifest.prepare(out, compat, config.overwrite)
    earlier = None if config.overwrite else previous  # --overwrite has just deleted it
    number = earlier.generation if earlier else 1  # the last committed generation
    if earlier and earlier.committing:  # a run killed while committing: finish its commit first
        if config.repair:  # a damaged file the commit rewrites goes first; its images are extracted again below
            _repair(out)
        generation.carry_out(out, earlier.committing)
        number = earlier.committing["generation"]
    repaired = _repair(out) if config.repair else ()
    incremental = index.exists(out)
    target = out.join(layout.staging(number + 1)) if incremental else out
    plan = Run(source, target, number + 1 if incremental else 1, incremental, weights, feature_meta,
               config.verify_content, repaired, layout.PREDICTIONS_DIR if answering else layout.FEATURES_DIR)
    record = Manifest(
        compat=compat,
        features=feature_meta,
        config=dataclasses.asdict(config),
        generation=number,
        precision_auto=precision_auto or None,
        written_by=earlier.written_by if earlier else {},
        catdog_version=__version__,
    )
    manifest.write(out, record)
    return plan, record


def _repair(out: Location) -> tuple[str, ...]:
    """Delete the committed files that cannot be read whole, and drop their images (and those of
    files the index names that are gone) from the index: this run extracts them again (a first run:
    their shards are pending again). Returns those files."""
    damage, indexed = verify.verify(out)
    for file in damage.damaged:
        out.join(file).delete()
    if indexed is None:
        return damage.damaged
    lost = set(damage.found)
    kept = {path: entry for path, entry in indexed.items() if entry.file not in lost}
    if len(kept) < len(indexed):
        index.write(out, kept)
    return damage.found


def _commit(out: Location, plan: Run, record: Manifest, planner: Planner) -> tuple[Manifest, tuple[int, int] | None]:
    """A first run: write the index. An incremental one: commit its generation (if anything changed).
    Returns the manifest record and the new index's (feature rows, error rows), None if none was written."""
    if not plan.incremental:
        return record, index.write_batches(out, planner.spool.batches())  # the spool is the index, in order
    changes = planner.changes
    if not changes.pending and not changes.superseded:
        return record, None
    stage = plan.target
    commit = generation.plan(plan.generation, generation.staged_files(stage), changes)
    written = index.write_rows(stage, generation.next_index(index.rows(out), commit, planner.rows()))
    manifest.write(out, record.replace(committing=commit))  # from here on, a killed run is finished by the next
    generation.carry_out(out, commit)
    return record.replace(generation=plan.generation, last_changes=str(changes)), written


def _refuse_out_in_root(root: Location, out: Location) -> None:
    """OUT in ROOT would mix catdog's files with the photos (and its reports' pictures would be
    listed as images by the next run)."""
    if type(root.fs) is type(out.fs) and (out.path + "/").startswith(root.path.rstrip("/") + "/"):
        raise CatdogError(f"--out {out} is inside the input folder {root}: put the output somewhere else")


def _writers(out: Location, done: set[tuple[str, str]], known: dict[str, str], kind: str) -> dict[str, str]:
    """Which node wrote each shard file: this run's and earlier runs' records, and for files a killed
    run committed without recording them (or a commit rewrote), the node their footer names."""
    return {f"{split}/{name}": known.get(f"{split}/{name}") or features.written_by(out, split, name, kind)
            for split, name in sorted(done)}


def _embed_pending(config: ExtractConfig, plan: Run, feed: Feed, planner: Planner, resources: cluster.Resources,
                   runner: str = "ray", answering: Answering | None = None) -> Progress:
    """Run the pipeline over the shards as the feed hands them out, on Ray or in this process
    (`runner`), with a progress bar over images (its total grows while the listing goes on); gather
    the actors' reports."""
    if answering is None:
        writer = features.ShardWriter(plan.target, features.feature_schema(plan.metadata), plan.source.classes)
    else:
        writer = predictions.PredictionWriter(plan.target, predictions.schema(plan.metadata, answering.classes),
                                              plan.source.classes, answering.classes)
    transform = answering.transform if answering else None
    if runner == "local":
        rows = local.extract_shards(feed, plan.source.root, config, plan.weights, writer, transform)
    else:
        where = cluster.placement(plan.source.local, plan.target.is_local, config.shared_fs)
        rows = pipeline.extract_shards(feed, plan.source.root, config, plan.weights, writer, resources, where,
                                       config.stall_timeout, transform)
    processed, seen, first, second, shards, writers = 0, set(), None, None, 0, {}
    stages = dict.fromkeys(("decode", "embed", "write"), 0.0)
    # rows is closed on any exit, before the Ray session ends (see pipeline.extract_shards).
    desc = "predict" if answering else "extract"
    with closing(rows), tqdm(total=None, unit="img", desc=desc, disable=not config.progress, file=sys.stderr) as bar:
        for row in rows:
            count = int(row["rows"]) + int(row["errors"])
            processed += count
            seen.add(row["embedder"])
            bar.total = planner.pending_images or None
            bar.update(count)
            writers[f"{row['split']}/{row['name']}"] = row["node"]
            planner.record(row)
            for stage in stages:
                stages[stage] += float(row[f"{stage}_s"])
            shards += 1
            second = first and (second or (time.perf_counter(), processed))
            first = first or (time.perf_counter(), processed, time.time())
    # From the second shard out, not the first: the first shard's write can land late (its writer was
    # still starting), and two shards then arrive together, one of them counted in a window it was
    # not timed in.
    steady_seconds = time.perf_counter() - second[0] if second else 0.0
    steady = (processed - second[1]) / steady_seconds if shards >= STEADY_MIN_SHARDS and steady_seconds > 0 else 0.0
    embedders = tuple(json.loads(e) for e in sorted(seen))
    return Progress(processed, steady, embedders, writers, {"first_shard": first[2], "last_shard": time.time()}, stages)
