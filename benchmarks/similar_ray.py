"""`catdog similar` on Ray (`--executor ray`: tasks that each hold a slice of the vectors) against the
search in one process, on the same embeddings in the same run: wall time, the driver's peak memory,
each task worker's peak, the recall the command reports (against an exact search of a sample) and
the planted near-copies found. A local Ray started by the job on this machine: its tasks share the
machine's cores, as a cluster's would share its nodes'.

The embeddings are synthetic (`tests.generators.embeddings`, 1 % planted near-copies), written to
Parquet as another tool writes them (files of 65,536-row row groups) and read by `catdog similar
--features-column`. Each run is a fresh process; a thread samples the memory of every Ray worker.

    python benchmarks/similar_ray.py --json benchmarks/similar_ray.json
    python benchmarks/similar_ray.py --table benchmarks/similar_ray.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.parts import command, peak_rss_gib, run_part  # noqa: E402
from benchmarks.throughput import machine  # noqa: E402
from tests import generators  # noqa: E402

# (rows, dims, executors, MiB of vectors per Ray task): the search in one process is measured beside
# Ray's where it fits here. At 3 M, tasks of 1.5 GiB: every shard visits each row's cells once, so
# fewer, larger shards cost less where the workers have the memory (`--task-memory`).
SETS = ((1_000_000, 512, ("local", "ray"), 512.0), (3_000_000, 256, ("ray",), 1536.0))
THRESHOLD, FILE_ROWS, CHUNK = 0.95, 262_144, 131_072


def write(n: int, dim: int, folder: str, seed: int = 0) -> None:
    """Embeddings Parquet files and the planted pairs (paths), written a chunk at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    duplicates = n // 100
    copies = np.arange(n - duplicates, n)
    originals = np.random.default_rng(seed + 9).choice(n - duplicates, duplicates, replace=False)
    np.save(os.path.join(folder, "planted.npy"), np.array([[f"img{c:07d}.jpg", f"img{o:07d}.jpg"]
                                                            for c, o in zip(copies, originals)]))
    X = generators.embeddings(n, dim, seed=seed).X  # float32: 2 GiB at 1M x 512, 3 GiB at 3M x 256
    rng = np.random.default_rng(seed + 10)
    X[copies] = X[originals] + rng.normal(0, 0.05, (duplicates, dim)).astype(np.float32) * X[originals].std(axis=1, keepdims=True)
    os.makedirs(os.path.join(folder, "emb"))
    for f, start in enumerate(range(0, n, FILE_ROWS)):
        rows = np.arange(start, min(n, start + FILE_ROWS))
        table = pa.table({"path": [f"img{i:07d}.jpg" for i in rows],
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X[rows].ravel()), dim)})
        pq.write_table(table, os.path.join(folder, "emb", f"part-{f:04d}.parquet"), row_group_size=65_536)


class WorkerMemory(threading.Thread):
    """The peak resident memory of every Ray worker process (`ray::...`) while the job runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.wait(0.25):
            for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
                title = (p.info["cmdline"] or [""])[0]
                if title.startswith("ray::") and "IDLE" not in title and p.info["memory_info"]:
                    self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), p.info["memory_info"].rss / 2**30)


def part_run(folder: str, executor: str, task_memory: str) -> dict:
    from catdog.config import SimilarConfig
    from catdog.insight import similar

    workers = WorkerMemory()
    workers.start()
    start = time.perf_counter()
    result = similar.run(SimilarConfig(features=os.path.join(folder, "emb"), features_column="embedding",
                                       report_dir=os.path.join(folder, f"report-{executor}"), threshold=THRESHOLD,
                                       method="approximate", executor=executor, task_memory=float(task_memory)))
    seconds = time.perf_counter() - start
    workers.done.set()
    planted = {tuple(sorted(p)) for p in np.load(os.path.join(folder, "planted.npy")).tolist()}
    found = {(p.a, p.b) for p in result.pairs}
    s = result.search
    return {"executor": executor, "task_memory_mib": float(task_memory), "images": result.images, "seconds": seconds, "driver_peak_gib": peak_rss_gib(),
            "worker_peak_gib": max(workers.peaks.values(), default=0.0), "workers": len(workers.peaks),
            "tasks": result.tasks, "pairs": len(found), "planted_found": len(planted & found) / len(planted),
            "index": s.index, "probes": s.probes, "pca_dims": s.pca_dims, "recall": s.recall.__dict__}


def part(kind: str, *values: str) -> dict:
    return {"run": lambda: part_run(*values)}[kind]()


def measure() -> dict:
    results = {"machine": machine(), "threshold": THRESHOLD, "sets": []}
    for n, dim, executors, task_memory in SETS:
        with tempfile.TemporaryDirectory() as folder:
            write(n, dim, folder)
            runs = []
            for executor in executors:
                runs.append(run_part(__file__, "run", folder, executor, str(task_memory)))
                print(json.dumps(runs[-1]), flush=True)
        results["sets"].append({"images": n, "dim": dim, "features_gib": n * dim * 4 / 2**30, "runs": runs})
    return results


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}. "
             f"`catdog similar --method approximate` (top 5, threshold {r['threshold']}) in one process and on a local "
             "Ray, the same embeddings in the same run; peaks are each process's own high-water mark (VmHWM).",
             "| images × dims | executor | wall | driver peak | largest worker peak | tasks | recall (sample): "
             "neighbours / pairs | planted pairs found |", "|---|---|---|---|---|---|---|---|"]
    for entry in r["sets"]:
        for run in entry["runs"]:
            recall = run["recall"]
            pairs = f"{recall['pairs_found']:.3f}" if recall["pairs_found"] is not None else "no pair"
            tasks = sum(t["tasks"] for t in run["tasks"].values()) if run["tasks"] else ""
            worker = f"{run['worker_peak_gib']:.2f} GiB ({run['task_memory_mib']:.0f} MiB tasks)" if run["executor"] == "ray" else ""
            lines.append(f"| {entry['images']:,} × {entry['dim']} ({entry['features_gib']:.1f} GiB) | {run['executor']} "
                         f"| {run['seconds']:.0f} s | {run['driver_peak_gib']:.2f} GiB | {worker} | {tasks} "
                         f"| {recall['neighbours']:.3f} / {pairs} | {run['planted_found']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, part, measure, table)
