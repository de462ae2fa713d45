"""`catdog extract --estimate` against the run it projects: the projected wall time and CPU-hours
of the whole photo folder from a sample of its shards, then the extraction itself, in one run.

    python benchmarks/estimate.py ../shared/data/cats_and_dogs_small --json benchmarks/estimate.json
    python benchmarks/estimate.py --table benchmarks/estimate.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks import incremental, photos_cli  # noqa: E402
from benchmarks.incremental import _machine, photo_folder  # noqa: E402

SIZE = incremental.SIZE
OPTIONS = {"weights": "none", "image_size": SIZE}
ESTIMATE = """
import json, sys, catdog
e = catdog.estimate(sys.argv[1], **json.loads(sys.argv[2]))
print(json.dumps({"images": e.images, "sample_images": e.sample.images, "sample_shards": e.sample_shards,
                  "rate": e.rate, "wall_seconds": e.wall_seconds, "cpu_hours": e.hours(e.sample.cpus),
                  "stages": e.sample.stages, "bottleneck": e.sample.bottleneck}))
"""


def estimate(root: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ESTIMATE, root, json.dumps(OPTIONS)], capture_output=True, text=True,
                          cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_seconds": time.perf_counter() - start}


def extract(root: str, out: str) -> dict:
    """The extraction itself, as a user runs it (benchmarks/incremental.py), and what it recorded."""
    process_seconds = incremental.extract(root, out)["process_seconds"]
    cost = json.load(open(os.path.join(out, "manifest.json")))["cost"]
    return {"wall_seconds": cost["wall_seconds"], "cost": cost, "process_seconds": process_seconds,
            "bound": cost["bottleneck"]}


def measure(photos: str) -> dict:
    work = tempfile.mkdtemp(prefix="catdog-estimate-")
    total = photo_folder(photos, f"{work}/root")
    r = {"photos": total, "image_size": SIZE, "machine": _machine()}
    r["estimate"] = estimate(f"{work}/root")
    r["run"] = extract(f"{work}/root", f"{work}/out")
    return r


def table(r: dict) -> str:
    e, x = r["estimate"], r["run"]
    cpus = x["cost"]["cpus"]
    measured_hours = cpus * x["wall_seconds"] / 3600
    return "\n".join([
        f"machine: {r['machine']}", f"{r['photos']:,} photos at {r['image_size']} px, weights none, fp32",
        f"{'':<26}{'wall s':>9}{'CPU-hours':>11}{'whole command s':>17}",
        f"{'estimate (projected)':<26}{e['wall_seconds']:>9.1f}{e['cpu_hours']:>11.3f}{e['process_seconds']:>17.1f}",
        f"{'the run (measured)':<26}{x['wall_seconds']:>9.1f}{measured_hours:>11.3f}{x['process_seconds']:>17.1f}",
        f"projected / measured wall time: {e['wall_seconds'] / x['wall_seconds']:.2f}; the estimate ran "
        f"{e['sample_images']:,} images in {e['sample_shards']} shards and cost "
        f"{e['process_seconds'] / x['process_seconds']:.2f} of the run's whole command",
        f"bound by: {e['bottleneck']} (sample), {x['bound']} (run); the run's cost: "
        f"{x['cost']['cpu_seconds_per_1000']:.1f} CPU-s per 1,000 images",
    ])


if __name__ == "__main__":
    photos_cli.main(measure, table, "benchmarks/estimate.json", "cats_and_dogs_small: split/class/file, 4,000 photos")
