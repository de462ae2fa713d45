"""The `catdog extract` job: plan (scan, compare with what OUT holds, shard, weights), run the Ray
pipeline over the pending shards, commit, summarise. The data path itself is `catdog.extraction.pipeline`.

A first run writes its shards straight into OUT (resumable shard by shard) and the index last.
Every later run is incremental: it extracts only the images added or changed since, stages their
shards, and commits them with the removal of superseded rows as one generation (`catdog.store.generation`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Iterator

from tqdm import tqdm

from catdog import cluster, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import convbase, imagefolder, images, listing, metadata, pipeline
from catdog.extraction.cost import Cost, Estimate
from catdog.extraction.imagefolder import ImageSet, Shard
from catdog.storage import Location
from catdog.store import features, generation, index, layout, manifest
from catdog.store.lock import locked
from catdog.store.manifest import Manifest
from catdog.version import __version__

STEADY_MIN_SHARDS = 4  # a rate needs a few shards after the first; with fewer there is no steady state
ESTIMATE_SHARDS_PER_ACTOR = 2  # --estimate's sample: at least this many shards per actor (and a steady rate)


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
            f"actors      {len(self.embedders)} ({cluster.devices(self.embedders)})" if self.embedders
            else "actors      none (nothing to extract)",
            f"wall time   {self.seconds + self.startup_seconds:.1f} s (start-up {self.startup_seconds:.1f} s)",
            *([f"timeline    {_timeline(self.timeline)} (from the process start)"] if self.timeline else []),
            *(self.cost.lines() if self.cost else []),
            f"output      {self.out}",
        ]


TIMELINE = {"ray": "Ray up", "weights": "weights", "pipeline": "pipeline", "model_loaded": "model loaded",
            "first_shard": "first shard", "last_shard": "last shard", "committed": "committed"}


def _timeline(marks: dict[str, float]) -> str:
    return ", ".join(f"{name} {marks[key]:.1f} s" for key, name in TIMELINE.items() if key in marks)


@dataclass(frozen=True)
class Run:
    """What this run has to do: the listing, its shards and where they go, what changed, the weights."""

    image_set: ImageSet
    shards: list[Shard]
    pending: list[Shard]
    target: Location  # OUT for a first run, the generation's staging folder for an incremental one
    generation: int
    previous: index.Index | None  # None: a first run
    changes: index.Changes | None
    weights: convbase.Weights
    metadata: dict
    repaired: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    processed: int
    steady_images_per_second: float
    embedders: tuple[dict, ...]
    writers: dict[str, str]  # "split/name" of each shard written -> the Ray node that wrote it
    entries: index.Index  # the images this run wrote, for the index
    marks: dict[str, float]  # wall-clock times: first and last shard seen
    stages: dict[str, float]  # decode, embed and write seconds summed over this run's shards


def run(config: ExtractConfig) -> ExtractResult:
    started = time.perf_counter()
    marks = {}
    cluster.check_address(config.address)
    root, out = storage.resolve(config.root), storage.resolve(config.out)
    image_set = listing.images(config)
    listed = time.perf_counter() - started
    if not config.from_table:
        _refuse_out_in_root(root, out)
    with locked(out), ThreadPoolExecutor(1, thread_name_prefix="weights") as pool:
        # The weights (TensorFlow's import, building the network) and Ray's start each take seconds: overlap them.
        making_weights = pool.submit(_timed, marks, "weights", _weights, config)
        with cluster.ray_session(config.address):
            marks["ray"] = time.time()
            size = cluster.cluster_size()
            resources = cluster.plan_resources(config, size)
            config, precision = _resolve_precision(config, resources)
            previous = manifest.read(out)  # under the lock: unchanged until _plan marks OUT as running
            config = _resolve_shard_size(config, resources, previous)
            with _writing(out):
                plan, record = _plan(config, root, out, image_set, making_weights.result(), precision, previous)
            startup = time.perf_counter() - started
            marks["pipeline"] = time.time()
            began = time.perf_counter()
            progress = _embed_pending(config, plan, resources) if plan.pending else Progress(0, 0.0, (), {}, {}, {}, {})
            seconds = time.perf_counter() - began
        committing = time.perf_counter()
        with _writing(out):
            record = _commit(out, plan, record, progress)
        spent = _cost(progress, listed, time.perf_counter() - committing, time.perf_counter() - started, resources, size)
        marks.update(progress.marks, committed=time.time())
        summary = ExtractResult(
            out=config.out,
            images=features.count(out, layout.FEATURES_DIR),
            errors=features.count(out, layout.ERRORS_DIR),
            processed=progress.processed,
            resumed_shards=len(plan.shards) - len(plan.pending),
            embedders=progress.embedders,
            seconds=seconds,
            steady_images_per_second=progress.steady_images_per_second,
            startup_seconds=startup,
            changes=str(plan.changes) if plan.changes else "",
            repaired=plan.repaired,
            precision=precision,
            timeline=_since_process_start(marks, progress.embedders),
            cost=spent if progress.processed else None,
        )
        done = features.committed(out)  # listed once: on an object store each listing is requests
        totals = {"images": summary.images, "errors": summary.errors, "shards": len(done), "actors": list(progress.embedders)}
        written = _writers(out, done, {**record.written_by, **progress.writers})
        with _writing(out):
            manifest.write(out, record.replace(status="complete", totals=totals, written_by=written, timeline=summary.timeline,
                                               cost=spent.record() if summary.cost else {}))
            manifest.clear_tmp(out)
    return summary


def estimate(config: ExtractConfig) -> Estimate:
    """Run a sample of the shards (spread over the input) as `run` would, into a temporary folder
    rather than OUT, and project the whole input's wall time and CPU/GPU-hours on this cluster."""
    started = time.perf_counter()
    cluster.check_address(config.address)
    image_set = listing.images(config)
    listed = time.perf_counter() - started
    with cluster.ray_session(config.address), tempfile.TemporaryDirectory(prefix="catdog-estimate-") as scratch:
        size = cluster.cluster_size()
        resources = cluster.plan_resources(config, size)
        config, _ = _resolve_precision(config, resources)
        config = _resolve_shard_size(config, resources, None)
        weights = _weights(config)
        shards = imagefolder.plan_shards(image_set, config.shard_size)
        wanted = max(STEADY_MIN_SHARDS + 1, ESTIMATE_SHARDS_PER_ACTOR * resources.num_actors)
        sample = shards[:: max(1, len(shards) // wanted)][:wanted]
        plan = Run(image_set, shards, sample, storage.resolve(scratch), 1, None, None, weights,
                   metadata.feature_metadata(config, image_set, weights.identity))
        progress = _embed_pending(config.replace(progress=False), plan, resources)
        spent = _cost(progress, listed, 0.0, time.perf_counter() - started, resources, size)
    return Estimate(len(image_set), spent, len(sample))


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


def _cost(progress: Progress, listed: float, committed: float, wall: float, resources: cluster.Resources,
          size: cluster.ClusterSize) -> Cost:
    loaded = min((e["loaded_at"] for e in progress.embedders if "loaded_at" in e), default=None)
    last = progress.marks.get("last_shard")
    working = last - loaded if loaded and last else 0.0
    stages = {"listing": listed, "start-up": max(0.0, wall - listed - committed - working), **progress.stages,
              "commit": committed}
    return Cost(stages, working, wall, progress.processed, resources.num_actors, size.cpus,
                resources.num_actors * resources.gpus_per_actor, progress.steady_images_per_second)


def _weights(config: ExtractConfig) -> convbase.Weights:
    weights = convbase.resolve_weights(config.weights, config.seed, config.image_size, config.backbone, config.pooling)
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


def _plan(config: ExtractConfig, root: Location, out: Location, image_set: ImageSet,
          weights: convbase.Weights, precision_auto: str, previous: Manifest | None) -> tuple[Run, Manifest]:
    """Check OUT against this run's settings (`previous`: its manifest), find what is already done,
    and mark OUT as running."""
    feature_meta = metadata.feature_metadata(config, image_set, weights.identity)
    compat = metadata.compat_settings(config, feature_meta, root)
    manifest.prepare(out, compat, config.overwrite)
    earlier = None if config.overwrite else previous  # --overwrite has just deleted it
    number = earlier.generation if earlier else 1  # the last committed generation
    if earlier and earlier.committing:  # a run killed while committing: finish its commit first
        generation.carry_out(out, earlier.committing)
        number = earlier.committing["generation"]
    indexed = index.read(out)
    repaired, indexed = _repair(out, indexed) if config.repair else ((), indexed)
    if indexed is None:
        plan = _first_run(config, out, image_set, weights, feature_meta)
    else:
        plan = _incremental_run(config, out, image_set, weights, feature_meta, indexed, number + 1)
    plan = dataclasses.replace(plan, repaired=repaired)
    record = Manifest(
        compat=compat,
        features=feature_meta,
        config=dataclasses.asdict(config),
        plan={"images": len(image_set), "shards": len(plan.shards), "digest": imagefolder.plan_digest(plan.shards)},
        generation=number,
        precision_auto=precision_auto or None,
        written_by=earlier.written_by if earlier else {},
        catdog_version=__version__,
    )
    manifest.write(out, record)
    return plan, record


def _repair(out: Location, indexed: index.Index | None) -> tuple[tuple[str, ...], index.Index | None]:
    """Delete the committed files that cannot be read whole, and drop their images (and those of
    files the index names that are gone) from the index: this run extracts them again (a first run:
    their shards are pending again). Returns those files and the index as it now is."""
    present = {layout.shard_file(kind, split, name) for kind in layout.KINDS for split, name in features.committed(out, kind)}
    found = tuple(file for file in sorted(present) if features.damaged(out, file))
    for file in found:
        out.join(file).delete()
    if indexed is None:
        return found, None
    kept = {path: entry for path, entry in indexed.items() if entry.file in present and entry.file not in found}
    found += tuple(sorted({e.file for e in indexed.values() if e.file not in present}))
    if len(kept) < len(indexed):
        index.write(out, kept)
    return found, kept


def _first_run(config: ExtractConfig, out: Location, image_set: ImageSet, weights: convbase.Weights,
               feature_meta: dict) -> Run:
    shards = imagefolder.plan_shards(image_set, config.shard_size)
    done = features.committed(out)
    _refuse_foreign_shards(out, done, shards)
    pending = [s for s in shards if (s.split, s.name) not in done]
    return Run(image_set, shards, pending, out, 1, None, None, weights, feature_meta)


def _incremental_run(config: ExtractConfig, out: Location, image_set: ImageSet, weights: convbase.Weights,
                     feature_meta: dict, previous: index.Index, number: int) -> Run:
    locate = storage.Resolver(image_set.root)
    content = (lambda paths: dict(zip(paths, images.digests([locate(p) for p in paths])))) \
        if config.verify_content else None
    changes = index.compare(previous, image_set.stamp_of, content)
    shards = imagefolder.plan_shards(image_set, config.shard_size, only=changes.pending, generation=number)
    stage = out.join(layout.staging(number))
    planned = {(s.split, s.name) for s in shards}
    for split, name in features.committed(stage) - planned:  # staged by a killed run over another listing
        for kind in layout.KINDS:
            stage.join(layout.shard_file(kind, split, name)).delete()
    done = features.committed(stage)
    pending = [s for s in shards if (s.split, s.name) not in done]
    return Run(image_set, shards, pending, stage, number, previous, changes, weights, feature_meta)


def _commit(out: Location, plan: Run, record: Manifest, progress: Progress) -> Manifest:
    """A first run: write the index. An incremental one: commit its generation (if anything changed)."""
    entries = {**_entries_from_files(plan, progress.entries), **progress.entries}
    if plan.previous is None:
        index.write(out, entries)
        return record
    if not plan.changes.pending and not plan.changes.superseded:
        return record
    stage = plan.target
    commit = generation.plan(plan.generation, generation.staged_files(stage), plan.previous, plan.changes)
    index.write(stage, generation.next_index(plan.previous, commit, entries))
    manifest.write(out, record.replace(committing=commit))  # from here on, a killed run is finished by the next
    generation.carry_out(out, commit)
    return record.replace(generation=plan.generation, last_changes=str(plan.changes))


def _entries_from_files(plan: Run, known: index.Index) -> index.Index:
    """Index entries for shards a killed run committed before this one: read back from their files
    (the path column alone); their content digests are unknown."""
    found: index.Index = {}
    this_run = {(s.split, s.name) for s in plan.pending}
    for kind in layout.KINDS:
        for split, name in features.committed(plan.target, kind) - this_run:
            file = layout.shard_file(kind, split, name)
            paths = features.read_file(plan.target, file, ["path"]).column("path").to_pylist()
            if all(p in known for p in paths):
                continue
            found.update(index.entries(plan.image_set.stamp_of, file, paths, [""] * len(paths)))
    return found


def _refuse_out_in_root(root: Location, out: Location) -> None:
    """OUT in ROOT would mix catdog's files with the photos (and its reports' pictures would be
    listed as images by the next run)."""
    if type(root.fs) is type(out.fs) and (out.path + "/").startswith(root.path.rstrip("/") + "/"):
        raise CatdogError(f"--out {out} is inside the input folder {root}: put the output somewhere else")


def _refuse_foreign_shards(out: Location, done: set, shards: list[Shard]) -> None:
    planned = {(s.split, s.name) for s in shards}
    foreign = sorted(done - planned)
    if foreign:
        split, name = foreign[0]
        raise CatdogError(
            f"{out} holds shards of a different file listing (e.g. split={split}/{name}) from a first run that did "
            "not finish; finish it over the same folder first, or use --overwrite or another --out"
        )


def _writers(out: Location, done: set[tuple[str, str]], known: dict[str, str]) -> dict[str, str]:
    """Which node wrote each shard file: this run's and earlier runs' records, and for files a killed
    run committed without recording them (or a commit rewrote), the node their footer names."""
    return {f"{split}/{name}": known.get(f"{split}/{name}") or features.written_by(out, split, name)
            for split, name in sorted(done)}


def _embed_pending(config: ExtractConfig, plan: Run, resources: cluster.Resources) -> Progress:
    """Run the pipeline over the pending shards with a progress bar over images; gather the actors' reports."""
    writer = features.ShardWriter(plan.target, features.feature_schema(plan.metadata), plan.image_set.classes)
    where = cluster.placement(plan.image_set.local, plan.target.is_local, config.shared_fs)
    rows = pipeline.extract_shards(plan.pending, plan.image_set.root, config, plan.weights, writer, resources, where, config.stall_timeout)
    total = sum(len(s.paths) for s in plan.pending)
    processed, seen, first, second, shards, writers, entries = 0, set(), None, None, 0, {}, {}
    stages = dict.fromkeys(("decode", "embed", "write"), 0.0)
    # rows is closed on any exit, before the Ray session ends (see pipeline.extract_shards).
    with closing(rows), tqdm(total=total, unit="img", desc="extract", disable=not config.progress, file=sys.stderr) as bar:
        for row in rows:
            count = int(row["rows"]) + int(row["errors"])
            processed += count
            seen.add(row["embedder"])
            bar.update(count)
            writers[f"{row['split']}/{row['name']}"] = row["node"]
            entries.update(_written_entries(plan.image_set, row))
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
    return Progress(processed, steady, embedders, writers, entries, {"first_shard": first[2], "last_shard": time.time()},
                    stages)


def _written_entries(image_set: ImageSet, row: pipeline.WrittenRow) -> index.Index:
    n, stamps = int(row["rows"]), image_set.stamp_of
    paths, digests = list(row["paths"]), list(row["digests"])
    return {**index.entries(stamps, layout.shard_file(layout.FEATURES_DIR, row["split"], row["name"]), paths[:n], digests[:n]),
            **index.entries(stamps, layout.shard_file(layout.ERRORS_DIR, row["split"], row["name"]), paths[n:], digests[n:])}
