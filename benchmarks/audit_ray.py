"""`catdog audit` on Ray (`--executor ray`: tasks that each read their own rows) against the audit in
one process, on the same labelled embeddings with label errors planted, in the same run: wall time,
the driver's peak memory, each task worker's peak, the precision and recall of the flagged images
against the planted ones, and whether the two executors flag the same images. A local Ray started
by the job on this machine: its tasks share the machine's cores, as a cluster's would share its nodes'.

The embeddings are synthetic (`tests.generators.embeddings`: 10 overlapping classes of ReLU'd
Gaussian vectors, 512 floats, 0.5 % planted near-copies), 5 % of the labels changed to another class
at random, written to Parquet as another tool writes them (files of 65,536-row row groups) and read
with `--features-column`. Each run is a fresh process; a thread samples every Ray worker's memory.

    python benchmarks/audit_ray.py --json benchmarks/audit_ray.json
    python benchmarks/audit_ray.py --table benchmarks/audit_ray.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.parts import command, peak_rss_gib, run_part  # noqa: E402
from benchmarks.similar_ray import WorkerMemory  # noqa: E402  one sampler of the Ray workers' memory
from benchmarks.throughput import machine  # noqa: E402
from tests import generators  # noqa: E402

# (rows, executors): at 100,000 both, their findings compared; at 1,000,000 Ray only (the vectors are
# 1.9 GiB: the folds' heads, whose training rows exceed a task's 512 MiB, are streamed).
SETS = ((100_000, ("local", "ray")), (1_000_000, ("ray",)))
DIM, CLASSES, SPREAD, NOISE, FILE_ROWS, TASK_MEMORY = 512, 10, 0.5, 0.05, 262_144, 512.0


def write(n: int, folder: str, seed: int = 0) -> None:
    """Embeddings Parquet files with their labels, and the planted errors' paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = generators.embeddings(n, DIM, duplicates=n // 200, clusters=CLASSES, spread=SPREAD, seed=seed)
    rng = np.random.default_rng(seed + 1)
    flipped = np.sort(rng.choice(n, int(n * NOISE), replace=False))
    labels = data.centres.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, CLASSES, len(flipped))) % CLASSES  # another class
    np.save(os.path.join(folder, "flipped.npy"), np.array([f"img{i:07d}.jpg" for i in flipped]))
    os.makedirs(os.path.join(folder, "emb"))
    for f, start in enumerate(range(0, n, FILE_ROWS)):
        rows = np.arange(start, min(n, start + FILE_ROWS))
        table = pa.table({"path": [f"img{i:07d}.jpg" for i in rows], "label": labels[rows],
                          "split": np.where(rows % 5 == 0, "test", "train"),
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(data.X[rows].ravel()), DIM)})
        pq.write_table(table, os.path.join(folder, "emb", f"part-{f:04d}.parquet"), row_group_size=65_536)


def part_run(folder: str, executor: str) -> dict:
    from catdog.config import AuditConfig
    from catdog.insight import audit

    workers = WorkerMemory()
    workers.start()
    start = time.perf_counter()
    report = audit.run(AuditConfig(features=os.path.join(folder, "emb"), features_column="embedding",
                                   report_dir=os.path.join(folder, f"report-{executor}"), executor=executor,
                                   task_memory=TASK_MEMORY))
    seconds = time.perf_counter() - start
    workers.done.set()
    planted = set(np.load(os.path.join(folder, "flipped.npy")).tolist())
    flagged = [i.path for i in report.label_issues]
    with open(os.path.join(folder, f"flagged-{executor}.json"), "w") as f:
        json.dump({i.path: i.self_confidence for i in report.label_issues}, f)
    method = json.load(open(os.path.join(folder, f"report-{executor}", "audit.json")))["method"]["probabilities"]
    hits = len(set(flagged) & planted)
    return {"executor": executor, "images": report.images, "seconds": seconds, "driver_peak_gib": peak_rss_gib(),
            "worker_peak_gib": max(workers.peaks.values(), default=0.0), "tasks": report.tasks,
            "planted": len(planted), "flagged": len(flagged), "precision": hits / max(len(flagged), 1),
            "recall": hits / len(planted), "accuracy": report.health["accuracy"], "outliers": len(report.outliers),
            "duplicates": len(report.duplicates), "streamed": "SGD" in method}


def part(kind: str, *values: str) -> dict:
    return {"run": lambda: part_run(*values)}[kind]()


def measure() -> dict:
    results = {"machine": machine(), "dim": DIM, "classes": CLASSES, "noise": NOISE, "task_memory_mib": TASK_MEMORY,
               "sets": []}
    for n, executors in SETS:
        with tempfile.TemporaryDirectory() as folder:
            write(n, folder)
            runs = []
            for executor in executors:
                runs.append(run_part(__file__, "run", folder, executor))
                print(json.dumps(runs[-1]), flush=True)
            flagged = [json.load(open(os.path.join(folder, f"flagged-{e}.json"))) for e in executors]
            compared = None
            if len(flagged) == 2:  # the same images, and how far apart their self-confidences are
                compared = {"same_images": flagged[0].keys() == flagged[1].keys(),
                            "largest_gap": max((abs(flagged[0][p] - flagged[1][p]) for p in flagged[0].keys() & flagged[1].keys()),
                                               default=0.0)}
        results["sets"].append({"images": n, "features_gib": n * DIM * 4 / 2**30, "runs": runs, "compared": compared})
    return results


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}. `catdog audit` of "
             f"{r['classes']} classes of {r['dim']} floats, {r['noise']:.0%} of the labels changed, in one process and on "
             f"a local Ray ({r['task_memory_mib']:.0f} MiB tasks), the same embeddings in the same run; peaks are each "
             "process's own high-water mark (VmHWM); against local: whether Ray flags the same images, and the largest "
             "difference of their self-confidences (BLAS on 1 thread in a task, 2 in one process).",
             "| images × dims | executor | fold heads | wall | driver peak | largest worker peak | tasks | flagged "
             "| precision | recall | out-of-fold accuracy | against local |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in r["sets"]:
        c = entry["compared"]
        for run in entry["runs"]:
            tasks = sum(t["tasks"] for t in run["tasks"].values()) if run["tasks"] else ""
            worker = f"{run['worker_peak_gib']:.2f} GiB" if run["executor"] == "ray" else ""
            against = (f"{'the same' if c['same_images'] else 'different'} images, ±{c['largest_gap']:.1e}"
                       if c and run["executor"] == "ray" else "")
            lines.append(f"| {entry['images']:,} × {r['dim']} ({entry['features_gib']:.1f} GiB) | {run['executor']} "
                         f"| {'streamed' if run['streamed'] else 'in memory'} | {run['seconds']:.0f} s "
                         f"| {run['driver_peak_gib']:.2f} GiB | {worker} | {tasks} | {run['flagged']:,} "
                         f"| {run['precision']:.3f} | {run['recall']:.3f} | {run['accuracy']:.3f} | {against} |")
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, part, measure, table)
