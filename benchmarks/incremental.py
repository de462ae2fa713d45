"""Incremental runs: the cost of a re-run after 1 % new photos against the first run, and of
listing and comparing 100,000 paths, measured in one run.

    python benchmarks/incremental.py ../shared/data/cats_and_dogs_small --json benchmarks/incremental.json
    python benchmarks/incremental.py --table benchmarks/incremental.json
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks import photos_cli  # noqa: E402
from catdog import storage
from catdog.extraction import imagefolder
from catdog.store import index  # noqa: E402

SIZE, ADDED_FRACTION, LISTING = 150, 0.01, 100_000


def extract(root: str, out: str) -> dict:
    """`catdog extract` as a user runs it; its summary's figures and the whole command's time."""
    command = [sys.executable, "-m", "catdog.commands", "extract", root, "--out", out, "--weights", "none",
               "--image-size", str(SIZE), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    run = re.search(r"this run\s+(\d+) images in ([\d.]+) s", done.stdout)
    startup = re.search(r"start-up ([\d.]+) s", done.stdout)
    changes = re.search(r"changes\s+(.*)", done.stdout)
    return {"processed": int(run.group(1)), "pipeline_seconds": float(run.group(2)),
            "startup_seconds": float(startup.group(1)), "process_seconds": time.perf_counter() - start,
            "changes": changes.group(1) if changes else ""}


def photo_folder(photos: str, into: str) -> int:
    """ROOT with every photo of the split/class/file folder, by symlink."""
    count = 0
    for split in ("train", "validation", "test"):
        for cls in ("cats", "dogs"):
            os.makedirs(f"{into}/{split}/{cls}")
            for name in sorted(os.listdir(f"{photos}/{split}/{cls}")):
                os.symlink(f"{photos}/{split}/{cls}/{name}", f"{into}/{split}/{cls}/{name}")
                count += 1
    return count


def add_photos(photos: str, into: str, count: int) -> None:
    names = sorted(os.listdir(f"{photos}/train/cats"))[:count]
    for i, name in enumerate(names):
        os.symlink(f"{photos}/train/cats/{name}", f"{into}/train/cats/added.{i}.jpg")


def listing(work: str) -> dict:
    """100,000 image files on disk (empty: only the listing is measured), listed and compared."""
    root = f"{work}/listing"
    for c in range(100):
        os.makedirs(f"{root}/train/c{c:02d}")
        for i in range(LISTING // 100):
            open(f"{root}/train/c{c:02d}/{i:05d}.jpg", "wb").close()
    start = time.perf_counter()
    image_set = imagefolder.scan(root)
    scanned = time.perf_counter() - start
    stamps = dict(zip(image_set.paths, image_set.stamps))
    previous = index.entries(stamps, "features/split=train/part.parquet", image_set.paths[1000:], [""] * (LISTING - 1000))
    out = storage.resolve(f"{work}/listing-out")
    start = time.perf_counter()
    index.write_rows(out, iter(previous))
    written = time.perf_counter() - start
    start = time.perf_counter()
    read_back = list(index.rows(out))
    read = time.perf_counter() - start
    start = time.perf_counter()
    comparison = index.Comparison(iter(read_back))
    pending = sum(1 for _ in comparison.pending(image_set.entries()))
    compared = time.perf_counter() - start
    assert pending == comparison.changes.added == 1000
    return {"paths": LISTING, "scan_seconds": scanned, "index_write_seconds": written, "index_read_seconds": read,
            "compare_seconds": compared}


def measure(photos: str) -> dict:
    work = tempfile.mkdtemp(prefix="catdog-incr-")
    total = photo_folder(photos, f"{work}/root")
    added = round(total * ADDED_FRACTION)
    r = {"photos": total, "added": added, "image_size": SIZE, "machine": _machine()}
    r["first"] = extract(f"{work}/root", f"{work}/out")
    add_photos(photos, f"{work}/root", added)
    r["rerun"] = extract(f"{work}/root", f"{work}/out")
    r["nothing"] = extract(f"{work}/root", f"{work}/out")
    r["listing"] = listing(work)
    return r


def table(r: dict) -> str:
    f, x, n, li = r["first"], r["rerun"], r["nothing"], r["listing"]
    lines = [f"machine: {r['machine']}", f"{r['photos']:,} photos at {r['image_size']} px, weights none; then {r['added']} added",
             f"{'run':<34}{'images read':>12}{'pipeline s':>11}{'start-up s':>11}{'whole s':>9}"]
    for name, m in (("first run", f), (f"re-run after {r['added']} added", x), ("re-run, nothing changed", n)):
        lines.append(f"{name:<34}{m['processed']:>12,}{m['pipeline_seconds']:>11.1f}{m['startup_seconds']:>11.1f}"
                     f"{m['process_seconds']:>9.1f}")
    lines += [f"re-run pipeline time / first run's: {x['pipeline_seconds'] / f['pipeline_seconds']:.3f} "
              f"(images read: {x['processed'] / f['processed']:.3f}); whole command {x['process_seconds'] / f['process_seconds']:.3f}",
              f"re-run summary: {x['changes']}",
              "", f"{li['paths']:,} paths: scan {li['scan_seconds']:.2f} s, index write {li['index_write_seconds']:.2f} s, "
              f"read {li['index_read_seconds']:.2f} s, compare {li['compare_seconds']:.2f} s"]
    return "\n".join(lines)


def _machine() -> str:
    name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs, {name}"


if __name__ == "__main__":
    photos_cli.main(measure, table, "benchmarks/incremental.json", "cats_and_dogs_small: split/class/file, 4,000 photos")
