"""Extraction on Ray: the domain stages (`catdog.extraction.stages`: decode, the conv base, the
Parquet writer) as Ray actors and tasks. The one module of extraction that imports Ray;
`catdog.extraction.local` runs the same stages in this process, and `catdog.e2e.training` is this
module's counterpart for end-to-end training.

Top to bottom (the rows passed between the stages are defined below):

    shard rows ──decode_stage──▶ DecodedRow ──Embedder──▶ EmbeddedRow ──write_stage──▶ WrittenRow
    (inside the Embedder on CPU-only     (Ray actors, one conv      (resident actors,
     clusters; tasks of half a CPU         base each)                 one per Embedder)
     beside GPU actors)

A shard is one call of an embedding actor and one of its writer, a few in flight per actor, so the
next shards decode while the model embeds one (side by side in the actor on CPU-only clusters, in
tasks on the CPUs GPU actors leave). Ray retries a decode task whose worker died and restarts a
dead writer or decoder; a dead embedding actor is replaced here, and the shards lost with any of
them go to the live actors (`extract_shards`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

from catdog import cluster
from catdog.cluster import Placement, Resources
from catdog.config import EmbedConfig, ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import stages
from catdog.extraction.feed import Feed
from catdog.extraction.stages import WrittenRow
from catdog.storage import Location
from catdog.store.features import ShardWriter
from catdog.vision import convbase

logger = logging.getLogger(__name__)

# Ray starts every worker at niceness 15 (its daemons first) unless this variable says otherwise, as
# Ray's job manager does for a job's driver. The embedding actor is the job's own work and runs at 0,
# ahead of Ray's daemons; its helpers (writer, decoders) keep Ray's 15, behind it.
EMBEDDER_ENV = {"RAY_worker_niceness": "0"}


class Embedder:
    """Actor: one conv base per actor (`stages.EmbedStage`), loaded once, applied to whole shards."""

    def __init__(self, config: EmbedConfig, dtype: str, cpus: float, decode: dict | None = None,
                 transform=None) -> None:
        import ray

        # decode_stage's arguments when this actor decodes its own shards. It runs its shards in flight
        # side by side (max_concurrency in `extract_shards`), so one decodes while the model embeds the
        # other, on half the cores it holds: the model keeps them all busy (benchmarks/throughput.py).
        self.decode = None if decode is None else {**decode, "threads": max(1, int(cpus) // 2)}
        self.model_lock = threading.Lock()  # one shard at a time on the model: two would split its threads
        self.config, self.dtype, self.transform, self.stage = config, dtype, transform, None
        self.devices = convbase.configure_devices(cpus)  # this actor's own process: its threads are the job's
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]

    def _load(self, weights: list) -> None:
        """The conv base, built at the first shard. The weights come with every call as [ObjectRef],
        a reference the driver keeps alive for the job and the actor reads once: an actor restarted by
        Ray reads it again, and as no constructor argument lives in the object store Ray has nothing
        to warn about (ray-project/ray#53727)."""
        import ray

        where = {"node": ray.get_runtime_context().get_node_id(), "ray_gpu_ids": self.gpu_ids, **self.devices}
        self.stage = stages.EmbedStage(ray.get(weights[0]), self.config, self.dtype, where, self.transform)

    def ready(self) -> bool:
        return True

    def __call__(self, row: stages.ShardRow | stages.DecodedRow, weights: list) -> stages.EmbeddedRow:
        with self.model_lock:
            if self.stage is None:
                self._load(weights)
        if self.decode is not None:
            row = stages.decode_stage(row, **self.decode)
        with self.model_lock:
            return self.stage(row)


def _write_here(row: stages.EmbeddedRow, *, writer: ShardWriter) -> WrittenRow:
    """write_stage in a Ray worker, naming its node."""
    return stages.write_stage(row, writer=writer, node=_node_id())


class Resident:
    """Actor that runs the decode or write stage in a long-lived process reserving no CPU
    (see `catdog.cluster.Resources`)."""

    def __init__(self, stage, kwargs: dict) -> None:
        self.stage, self.kwargs = stage, kwargs

    def __call__(self, row: dict) -> dict:
        return self.stage(row, **self.kwargs)


def _decodes_in_embedder(resources: Resources, placement: Placement) -> bool:
    """CPU-only clusters: each embedding actor decodes its own shards. Decoding costs a few % of
    VGG16's time on a CPU; in a process of its own it would take the same cores, wake there while the
    model runs and send every shard's pixels through the object store. Not when ROOT is one node's
    disk on a cluster of several: every actor would have to run on that node."""
    return resources.gpus_per_actor == 0 and (placement.decode_node is None or placement.nodes == 1)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


# A shard whose actor died (its node lost, its process killed) goes to another actor, at most this
# many times: a shard that kills every actor it meets stops the job instead.
MAX_SHARD_TRIES = 3
# The watchdog (`Watchdog`): how long the job waits for a shard before it calls the cluster stuck.
FIRST_SHARD_STALL_S = 1800.0  # the first waits on every actor's model (ImageNet weights downloaded per node)
STALL_FLOOR_S = 600.0
STALL_FACTOR = 20  # ... or this many times the longest wait between two shards so far
LISTING_POLL_S = 0.2  # how often a free actor looks for a shard the listing has just cut


class Watchdog:
    """Stops a job that has stopped moving: no shard finished for `limit()` seconds. Ray waits for
    an actor that cannot be placed (its node lost, no GPU left) for ever."""

    def __init__(self, stall_timeout: float | None) -> None:
        self.fixed, self.last, self.longest, self.shards = stall_timeout, time.monotonic(), 0.0, 0

    def limit(self) -> float:
        if self.fixed is not None:
            return self.fixed
        return FIRST_SHARD_STALL_S if not self.shards else max(STALL_FLOOR_S, STALL_FACTOR * self.longest)

    def remaining(self) -> float:
        return self.limit() - (time.monotonic() - self.last)

    def waiting(self) -> None:
        """Nothing is running: the job waits on its listing, not on the cluster."""
        self.last = time.monotonic()

    def shard_done(self) -> None:
        now = time.monotonic()
        if self.shards:  # the first shard's wait is start-up, not a shard's time
            self.longest = max(self.longest, now - self.last)
        self.last, self.shards = now, self.shards + 1

    def stalled(self) -> CatdogError:
        waited = f"{self.limit():.0f} s"
        since = f" (the longest wait between shards so far: {self.longest:.0f} s)" if self.shards > 1 else ""
        return CatdogError(f"no shard finished in {waited}{since}: the cluster is not making progress (actors that "
                           "cannot be placed, a lost node, a store that does not answer); stopped with the shards "
                           "written so far kept: run the same command again to resume (--stall-timeout to wait longer)")


def extract_shards(shards: Feed, root: Location, config: ExtractConfig, weights: convbase.Weights, writer: ShardWriter,
                   resources: Resources, placement: Placement, stall_timeout: float | None = None,
                   transform=None) -> Iterator[WrittenRow]:
    """Run decode -> embed -> write over the shards on Ray; yields each shard as it is committed
    (`transform`: applied to the features in the embedding actors, `stages.EmbedStage`).
    The shards come from a feed whose listing may still be running: a free actor takes the next one
    as soon as it is cut.

    Each shard is one call of an embedding actor and one of its writer, `resources.shards_in_flight` at
    a time per actor; its decoding runs in the embedding actor (CPU-only clusters), in a resident
    decoder on the node holding ROOT, or in a task of `resources.decode_cpus` (GPU actors: decoding
    takes the CPUs they leave). Nothing streams between stages but whole shards: under Ray Data its
    driver loop and helper actors took CPU the model lacked on small machines (docs/performance.md).

    An embedding actor that dies is replaced, and its shards go to the actors alive (Ray's own actor
    restart would wait for the dead actor's resources, for ever when its node is gone); a replacement
    takes shards once Ray has placed it. A store's refusal to write stops the job in one line; so does
    the watchdog."""
    import ray

    decode = {"root": root, "config": config.decode, "classes": len(config.class_names)}
    inside = _decodes_in_embedder(resources, placement)
    shared = [ray.put(weights)]  # held until the end: a replacement actor reads it again

    def embedder():
        return ray.remote(Embedder).options(num_cpus=resources.cpus_per_actor, num_gpus=resources.gpus_per_actor,
                                            max_concurrency=resources.shards_in_flight, max_restarts=0,
                                            runtime_env={"env_vars": EMBEDDER_ENV},
                                            **cluster.on_node(placement.decode_node if inside else None)).remote(
            config.embed, config.dtype, resources.cpus_per_actor, decode if inside else None, transform)

    embedders = [embedder() for _ in range(resources.num_actors)]
    writers = [_resident_actor(_write_here, {"writer": writer}, placement.write_node) for _ in embedders]
    decoders, residents = _decoders(inside, decode, resources, placement)
    lanes = list(zip(decoders, embedders, writers))
    started = list(embedders)  # every embedding actor of the job, to stop at the end
    idle = [i for i in range(len(lanes)) for _ in range(resources.shards_in_flight)]
    running: dict = {}  # ObjectRef of a shard's write -> (lane, shard, the embedding actor it went to)
    joining: dict = {}  # ObjectRef of a replacement actor's ready() -> its lane
    queue, tries = [], {}  # queue: shards lost with their actor, handed out again first
    watchdog = Watchdog(stall_timeout)
    try:
        while queue or running or shards.held or not shards.finished:
            while idle and (shard := queue.pop() if queue else shards.poll()) is not None:
                lane = idle.pop()
                decoder, actor, shard_writer = lanes[lane]
                running[shard_writer.__call__.remote(actor.__call__.remote(decoder(stages.shard_row(shard)), shared))] = (lane, shard, actor)
            if not running and not joining:  # every cut shard is done: the listing is behind the actors
                watchdog.waiting()
                if not shards.finished and (shard := shards.poll(LISTING_POLL_S)) is not None:
                    queue.append(shard)
                continue
            listing = idle and not shards.finished  # a free actor waits for the listing: look again soon
            timeout = max(0.0, watchdog.remaining())
            done, _ = ray.wait([*running, *joining], num_returns=1, timeout=min(timeout, LISTING_POLL_S) if listing else timeout)
            if not done:
                if watchdog.remaining() > 0:
                    continue
                raise watchdog.stalled()
            if done[0] in joining:  # a replacement actor is up: its lane takes shards again
                lane = joining.pop(done[0])
                idle += [lane] * resources.shards_in_flight
                continue
            lane, shard, actor = running.pop(done[0])
            try:
                row = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                if not _lost(exc):
                    raise _refused(exc, writer) from None
                key = (shard.split, shard.name)
                tries[key] = tries.get(key, 0) + 1
                if tries[key] >= MAX_SHARD_TRIES:
                    raise CatdogError(f"shard {shard.split}/{shard.name} was lost with its actor {MAX_SHARD_TRIES} "
                                      f"times; last: {_first_line(exc)}") from None
                queue.append(shard)
                if lanes[lane][1] is actor:  # its first lost shard: the others of the actor follow
                    _replace(lane, lanes, embedder, started, joining, idle, exc)
                continue
            watchdog.shard_done()
            idle.append(lane)
            yield row
    finally:
        for actor in residents + started + writers:  # an interrupted job leaves no queued shards running
            ray.kill(actor, no_restart=True)


def _replace(lane: int, lanes: list, make, started: list, joining: dict, idle: list, exc: Exception) -> None:
    """The lane's embedding actor died: a new one takes its place once Ray has placed it."""
    decoder, _, shard_writer = lanes[lane]
    idle[:] = [i for i in idle if i != lane]
    actor = make()
    started.append(actor)
    lanes[lane] = (decoder, actor, shard_writer)
    joining[actor.ready.remote()] = lane
    logger.warning(f"catdog: an embedding actor was lost ({_first_line(exc)}); its shards go to the others, and "
                   "a new actor starts where the cluster has room")


def _lost(exc: Exception) -> bool:
    """The shard's work was lost with a process or a node (itself, or as what a later stage of the
    shard could not get), not refused by its code."""
    import ray

    lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError)
    return cluster.cause(exc, lost) is not None


def _refused(exc, writer: ShardWriter) -> Exception:
    """A store or disk that refused a write, or a store that did not answer a read, is the user's to
    fix, in one line (`stages.refused`); anything else is a fault of catdog's."""
    cause = cluster.cause(exc, OSError)
    return exc if cause is None else stages.refused(cause, writer)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n\n")[0].split())[:300]


def _decoders(inside: bool, decode: dict, resources: Resources, placement: Placement) -> tuple[list, list]:
    """Per embedding actor, what turns a shard row into the row its actor takes (the row itself where
    the actor decodes, else a decode task's or a resident decoder's result); and the resident decoders."""
    import ray

    if inside:
        return [lambda row: row] * resources.num_actors, []
    if resources.decode_cpus > 0:
        task = ray.remote(stages.decode_stage).options(num_cpus=resources.decode_cpus, **cluster.on_node(placement.decode_node))
        return [lambda row: task.remote(row, **decode)] * resources.num_actors, []
    residents = [_resident_actor(stages.decode_stage, decode, placement.decode_node) for _ in range(resources.num_actors)]
    return [actor.__call__.remote for actor in residents], residents


def _resident_actor(stage, kwargs: dict, node: str | None):
    """A long-lived process running a stage, reserving no CPU (see `catdog.cluster.Resources`). It
    needs no resources, so Ray restarts it anywhere it may run; the shards it lost are handed out
    again as a lost embedding actor's are. Out of order: a writer keeping to the order of submission
    would hold the shard embedded first until the others were done too."""
    import ray

    return ray.remote(Resident).options(num_cpus=0, allow_out_of_order_execution=True, max_restarts=-1,
                                        **cluster.on_node(node)).remote(stage, kwargs)
