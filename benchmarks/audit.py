"""`catdog audit` on labelled embeddings with label errors planted: time, peak memory, and the
precision and recall of the flagged images against the planted ones, at 10,000 and 100,000 rows
and 2, 5 and 10 % noise; each run in a fresh process, all in one run.

The embeddings are synthetic (`tests.generators.embeddings`: 10 overlapping classes of ReLU'd
Gaussian vectors, 256 floats; the out-of-fold accuracy against the given labels is in the table),
written to Parquet as another tool writes them and read by `catdog audit --features-column`. A
planted error is a row whose label was changed to another class at random.

    python benchmarks/audit.py --json benchmarks/audit.json
    python benchmarks/audit.py --table benchmarks/audit.json
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
from benchmarks.throughput import machine  # noqa: E402  one description of the machine for the benchmarks
from tests import generators  # noqa: E402

RUNS = ((10_000, 0.02), (10_000, 0.05), (10_000, 0.10), (100_000, 0.05))
DIM, CLASSES, SPREAD = 256, 10, 0.5


def write(n: int, noise: float, folder: str, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq


    data = generators.embeddings(n, DIM, clusters=CLASSES, spread=SPREAD, seed=seed)
    rng = np.random.default_rng(seed + 1)
    flipped = np.sort(rng.choice(n, int(n * noise), replace=False))
    labels = data.centres.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, CLASSES, len(flipped))) % CLASSES  # another class
    paths = np.array([f"img{i:07d}.jpg" for i in range(n)])
    pq.write_table(pa.table({"path": paths, "label": labels,
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(data.X.ravel()), DIM)}),
                   os.path.join(folder, "embeddings.parquet"))
    np.save(os.path.join(folder, "flipped.npy"), paths[flipped])


def part_audit(folder: str) -> dict:
    from catdog.config import AuditConfig
    from catdog.insight import audit

    start = time.perf_counter()
    report = audit.run(AuditConfig(features=os.path.join(folder, "embeddings.parquet"), features_column="embedding",
                                   report_dir=os.path.join(folder, "report")))
    seconds = time.perf_counter() - start
    planted = set(np.load(os.path.join(folder, "flipped.npy")).tolist())
    flagged = {i.path for i in report.label_issues}
    top = {i.path for i in report.label_issues[: len(planted)]}
    return {"images": report.images, "planted": len(planted), "flagged": len(flagged), "seconds": seconds,
            "audit_seconds": report.seconds, "peak_rss_gib": peak_rss_gib(),
            "precision": len(flagged & planted) / max(len(flagged), 1), "recall": len(flagged & planted) / len(planted),
            "precision_at_planted": len(top & planted) / len(planted), "accuracy": report.health["accuracy"]}



def measure() -> dict:
    results = {"machine": machine(), "dim": DIM, "classes": CLASSES, "spread": SPREAD, "runs": []}
    for n, noise in RUNS:
        with tempfile.TemporaryDirectory() as folder:
            write(n, noise, folder)
            results["runs"].append({"noise": noise, **run_part(__file__, "audit", folder)})
            print(json.dumps(results["runs"][-1]), flush=True)
    return results


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}; "
             f"{r['classes']} classes of {r['dim']} floats", "",
             "| images | planted errors | flagged | precision | recall | precision in the top planted-count "
             "| out-of-fold accuracy | time | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lines.append(f"| {x['images']:,} | {x['noise']:.0%} ({x['planted']:,}) | {x['flagged']:,} | {x['precision']:.3f} "
                     f"| {x['recall']:.3f} | {x['precision_at_planted']:.3f} | {x['accuracy']:.3f} | {x['seconds']:.1f} s "
                     f"| {x['peak_rss_gib']:.2f} GiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, lambda kind, folder: part_audit(folder), measure, table)
