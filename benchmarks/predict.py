"""`catdog predict M ROOT --out DIR` (Parquet predictions: extraction's job with the head in its
actors) against `catdog extract` of the same photos, side by side in one run: the steady rate of
each (images per second after the first shards), its wall time and what it wrote. The photos are
the recipe's real JPEGs (`../shared/data/cats_and_dogs_small`, a table of the first N of them, so
both read exactly the same files), VGG16 at 150 px with random weights (`--weights none`: the
numbers are ImageNet's shape and cost), on Ray with the actors filling this machine. The head is a
logistic regression fitted on the extraction's features. Each run is a fresh process.

    python benchmarks/predict.py --json benchmarks/predict.json [--images 1000]
    python benchmarks/predict.py --table benchmarks/predict.json
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.parts import command, peak_rss_gib, run_part  # noqa: E402
from benchmarks.throughput import machine  # noqa: E402

PHOTOS = os.path.join(os.path.dirname(PROJECT), "shared", "data", "cats_and_dogs_small")
IMAGES = int(os.environ.get("CATDOG_BENCH_IMAGES", "1000"))
SHARD = 64  # small enough for a steady rate over 1,000 photos, large enough that a shard is mostly model time


def table_of_photos(folder: str, n: int) -> str:
    """A Parquet table of the first n photos (by split, class and name, every split taken in turn)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = sorted(os.path.join(d, f) for d, _, files in os.walk(PHOTOS) for f in files if f.endswith(".jpg"))
    chosen = found[:: max(1, len(found) // n)][:n]
    rows = {"path": chosen, "label": [p.split("/")[-2] for p in chosen], "split": [p.split("/")[-3] for p in chosen]}
    path = os.path.join(folder, "photos.parquet")
    pq.write_table(pa.table(rows), path)
    return path


def part_run(kind: str, table: str, out: str, model: str) -> dict:
    import catdog

    options = dict(from_table=True, executor="ray", shard_size=SHARD, progress=False)
    start = time.perf_counter()
    if kind == "extract":
        result = catdog.extract(table, out, weights="none", image_size=150, **options)
    else:
        result = catdog.predict(model, table, out, **options)
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(out) for f in files)
    return {"kind": kind, "images": result.images, "errors": result.errors, "seconds": seconds,
            "steady_images_per_second": result.steady_images_per_second, "images_per_second": result.images_per_second,
            "actors": len(result.embedders), "written_mib": size / 2**20, "driver_peak_gib": peak_rss_gib()}


def part_head(features: str, model: str) -> dict:
    import catdog

    catdog.fit_head(features, model)
    return {}


def part(kind: str, *values: str) -> dict:
    return part_head(*values) if kind == "head" else part_run(kind, *values)


def measure() -> dict:
    if not os.path.isdir(PHOTOS):
        raise SystemExit(f"the photos are not at {PHOTOS}")
    with tempfile.TemporaryDirectory() as folder:
        table = table_of_photos(folder, IMAGES)
        features, model = os.path.join(folder, "features"), os.path.join(folder, "model")
        runs = [run_part(__file__, "extract", table, features, "")]
        run_part(__file__, "head", features, model)
        runs.append(run_part(__file__, "predict", table, os.path.join(folder, "preds"), model))
        # Extraction once more, after: neither kind gains from running first (page cache, Ray's files).
        runs.append(run_part(__file__, "extract", table, os.path.join(folder, "features-again"), ""))
    return {"machine": machine(), "images": IMAGES, "shard_size": SHARD, "runs": runs}


def ratio(r: dict) -> float:
    """predict's steady rate over the mean of the two extractions' around it."""
    extracts = [x["steady_images_per_second"] for x in r["runs"] if x["kind"] == "extract"]
    predicted = next(x["steady_images_per_second"] for x in r["runs"] if x["kind"] == "predict")
    return predicted / (sum(extracts) / len(extracts))


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}",
             f"{r['images']:,} photos, VGG16 at 150 px (fp32), shards of {r['shard_size']}, on a local Ray; runs in "
             "this order:",
             "| run | images | wall | steady rate | actors | written |", "|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lines.append(f"| {x['kind']} | {x['images']:,} | {x['seconds']:.1f} s | {x['steady_images_per_second']:.1f} "
                     f"images/s | {x['actors']} | {x['written_mib']:.1f} MiB |")
    lines += [f"predict's steady rate / extract's (mean of the runs before and after): {ratio(r):.3f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, part, measure, table)
