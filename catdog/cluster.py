"""Ray itself: joining or starting a cluster, and sizing the actor pool from what the cluster has."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from catdog import quiet, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError

NODE_ID_LABEL = "ray.io/node-id"  # every Ray node carries its id as a label
MAX_CPUS_PER_ACTOR = 8  # past this a single VGG16 gains little from more threads; run another actor
# GPU clusters decode in tasks, and the GPU waits on them. Each reserves half a CPU: two decode per
# core, so one runs while Ray hands the other's shard on, and the core a GPU actor reserves but mostly
# waits on decodes too (the ceiling rows of benchmarks/throughput.py measure the pipeline so).
GPU_DECODE_TASK_CPUS = 0.5
CPU_SHARDS_IN_FLIGHT = 2  # per CPU embedding actor: one decodes while the other is embedded
# Images per shard when --shard-size is not given. A shard is one decode task and one call of an
# actor: on a CPU one of 256 is tens of seconds of VGG16, a fine unit of resume and of the progress
# bar; on a GPU it is a fraction of a second, and the cost per task then sets the rate: the ceiling
# rows of benchmarks/throughput.py compare shards of 1024 and 256 with a zero-cost model.
CPU_SHARD_SIZE = 256
GPU_SHARD_SIZE = 1024


@dataclass(frozen=True)
class Resources:
    num_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    # Where decoding does not run inside the embedding actors (`catdog.extraction.pipeline`): in tasks that each
    # reserve this many CPUs (GPU actors), or (0) in one long-lived actor per embedding actor that
    # reserves none. Ray kills idle workers beyond one per CPU after a second, so 0-CPU tasks would
    # start a new Python process for nearly every shard, stealing the model's cores each time.
    # Writing always runs in one such actor per embedding actor: as CPU-reserving tasks, writes would
    # wait behind every pending decode for a free CPU.
    decode_cpus: float
    # Shards on each embedding actor at once: one embedded while the others decode. CPU actors decode
    # their own, one beside the model; beside a GPU actor, as many as the CPUs it leaves can decode.
    shards_in_flight: int


@dataclass(frozen=True)
class Placement:
    """The node that tasks reading ROOT (decode) and writing OUT must run on, or None for anywhere.

    A local path means the driver's disk; on a multi-node cluster a task elsewhere would read
    another machine's disk, or scatter shards over several. URIs and shared filesystems are the
    same from every node.
    """

    decode_node: str | None
    write_node: str | None
    nodes: int  # alive when the job started: the actor pool is sized then, so it stays on these


def placement(root_is_local: bool, out_is_local: bool, shared_fs: bool) -> Placement:
    import ray

    here = ray.get_runtime_context().get_node_id()
    return Placement(here if root_is_local and not shared_fs else None, here if out_is_local and not shared_fs else None,
                     node_count())


def node_count() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


@dataclass(frozen=True)
class ClusterSize:
    cpus: float
    gpus: float
    largest_node_cpus: float


def plan_resources(config: ExtractConfig, cluster: ClusterSize) -> Resources:
    """Actor count and sizes: one actor per GPU by default, else CPU actors filling the cluster."""
    gpus_per_actor = config.gpus_per_actor if config.gpus_per_actor is not None else (1.0 if cluster.gpus else 0.0)
    if gpus_per_actor > 0:
        cpus_per_actor = config.cpus_per_actor if config.cpus_per_actor is not None else 1.0
        num_actors = config.num_actors or max(1, int(cluster.gpus // gpus_per_actor))
        decoding = max(0.0, cluster.cpus - num_actors * cpus_per_actor) / GPU_DECODE_TASK_CPUS / num_actors
        return Resources(num_actors, cpus_per_actor, gpus_per_actor, decode_cpus=GPU_DECODE_TASK_CPUS,
                         shards_in_flight=1 + max(1, math.ceil(decoding)))
    if config.cpus_per_actor is not None:
        cpus_per_actor = config.cpus_per_actor
    elif config.num_actors:
        cpus_per_actor = max(1.0, math.floor(cluster.cpus / config.num_actors))
    else:
        cpus_per_actor = float(max(1, min(MAX_CPUS_PER_ACTOR, int(cluster.largest_node_cpus))))
    num_actors = config.num_actors or max(1, int(cluster.cpus // max(cpus_per_actor, 1e-9)))
    # CPU actors own every core; decoding (a few % of VGG16's cost) shares them unreserved.
    return Resources(num_actors, cpus_per_actor, 0.0, decode_cpus=0.0, shards_in_flight=CPU_SHARDS_IN_FLIGHT)


def default_shard_size(resources: Resources) -> int:
    return GPU_SHARD_SIZE if resources.gpus_per_actor > 0 else CPU_SHARD_SIZE


def cluster_size() -> ClusterSize:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=1)
    return ClusterSize(float(total.get("CPU", 1)), float(total.get("GPU", 0)), float(largest))


@contextmanager
def ray_session(address: str | None, state_api: bool = False) -> Iterator[None]:
    """Join the given cluster (or RAY_ADDRESS, as under `ray job submit`), else start a local Ray.
    A Ray this process already joined (a notebook's `ray.init()`) is used as it is and left running.
    A local Ray starts without its dashboard (seconds of start-up for a page nobody opens) unless
    `state_api`: Ray Train watches its controller through the State API, which the dashboard serves."""
    import ray

    if ray.is_initialized():
        yield
        return
    application_handler = _sigterm_handler()
    try:
        ray.init(address=address, logging_level=quiet.ray_log_level(), include_dashboard=state_api, log_to_driver=True,
                 runtime_env=worker_runtime_env())
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CatdogError(f"cannot connect to Ray at {address}: {str(exc).splitlines()[0]}") from None
    if application_handler is not None:
        # ray.init replaces the application's SIGTERM handler with its own (exit at once, killing a
        # local Ray's processes), and the driver's core worker puts a stack-dumping one below it.
        # The application's handler (the command line's stops the job as Ctrl-C does, and the
        # `finally` below shuts Ray down) is put back as it was.
        signal.signal(signal.SIGTERM, application_handler)
    try:
        yield
    finally:
        ray.shutdown()


def map_in_tasks(fn, items: list, address: str | None, local_disk: bool) -> Iterator:
    """fn over items in Ray tasks of one CPU each, on the cluster of `address` (or RAY_ADDRESS, or
    this process's Ray, or a local one), on this node only where the items are its own disk; the
    results as the tasks finish."""
    with ray_session(address):
        for _, result in tasks(fn, items, local_disk):
            yield result


def tasks(fn, items: list, local_disk: bool, whole_node: bool = False) -> Iterator[tuple[str, object]]:
    """fn over items in Ray tasks of one CPU each (`whole_node`: as many as the largest node has, up
    to MAX_CPUS_PER_ACTOR) on the Ray this process joined (`ray_session`), on this node only where
    they read or write its own disk: (the node a task ran on, its result) as the tasks finish. Ray
    retries a task lost with its node; a task's own error is raised here as it was raised there (a
    CatdogError stays one line)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    # Spread over the nodes (Ray would fill this node first): the tasks are data-parallel, each reads its own part.
    here = on_node(node) if local_disk and node_count() > 1 else {"scheduling_strategy": "SPREAD"}
    if whole_node:
        mine = [n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive") and n["NodeID"] == node]
        cpus = mine[0] if "label_selector" in here and mine else cluster_size().largest_node_cpus
    task = ray.remote(_apply).options(num_cpus=min(MAX_CPUS_PER_ACTOR, max(1, int(cpus))) if whole_node else 1, **here)
    pending = [task.remote(fn, item) for item in items]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                own = cause(exc, CatdogError)
                if own is not None:
                    raise CatdogError(str(own)) from None
                raise
    finally:
        for ref in pending:  # the caller stopped (an error, Ctrl-C): the rest are not wanted
            ray.cancel(ref)


def _apply(fn, item):
    """A Ray task's body: any callable (a functools.partial too) on one item, and where it ran."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(item)


def _sigterm_handler():
    """The application's own Python SIGTERM handler, if it installed one (and can: main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


LOG_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)


def worker_runtime_env() -> dict | None:
    """The object-store and log settings of this process for every worker of the job: a cluster's
    workers were started with their own environment. Under `ray job submit` the job's own runtime
    env already reaches them (and Ray refuses a variable named twice)."""
    env = {**storage.credentials_env(), **{k: os.environ[k] for k in LOG_VARIABLES if os.environ.get(k)}}
    if not env or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return None
    return {"env_vars": env}


def check_address(address: str | None) -> None:
    """Fail in seconds: ray.init keeps retrying an address where nothing listens for minutes."""
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or hostport, int(port or 6379)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise CatdogError(f"cannot reach Ray at {address}: {getattr(exc, 'strerror', None) or exc}") from None


def devices(embedders: tuple[dict, ...]) -> str:
    """The devices the actors ran on: 'GPUs 0, 1' on one node, else per node ('node 3f2a…: GPUs 0; …').

    GPU ids are per node (every node has a GPU 0), so they are never merged across nodes.
    """
    by_node: dict[str, list[dict]] = {}
    for e in embedders:
        by_node.setdefault(e.get("node", "?"), []).append(e)
    parts = []
    for node, actors in sorted(by_node.items()):
        gpus = sorted({g for a in actors for g in a["ray_gpu_ids"]})
        where = f"GPUs {', '.join(gpus)}" if gpus else f"CPU, {sum(a['intra_op_threads'] for a in actors)} threads"
        if any(a["ray_gpu_ids"] and not a.get("tf_gpus") for a in actors):
            # Ray's GPU resource without a device TensorFlow can use (no driver, a CUDA library that did
            # not load: the actor's log says which), or a fake GPU resource: the model ran on the CPU.
            where += " (TensorFlow saw no GPU: ran on the CPU)"
        parts.append(where if len(by_node) == 1 else f"node {node[:8]}: {where}")
    return "; ".join(parts)


def on_node(node: str | None) -> dict:
    """Ray options that keep a task or actor on one node, or none."""
    return {} if node is None else {"label_selector": {NODE_ID_LABEL: node}}


def cause(exc: BaseException, kind: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of `kind` in what Ray raised: the error itself, what a task or actor raised
    (`.cause`), what Ray Train's workers or controller raised, or an exception it chains."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        inner = getattr(e, "cause", None)
        if isinstance(inner, BaseException):  # a RayTaskError, itself an instance of its cause's class: the cause
            todo.insert(0, inner)
            continue
        if isinstance(e, kind):
            return e
        todo += [getattr(e, "controller_failure", None), e.__cause__, *(getattr(e, "worker_failures", None) or {}).values()]
    return None
