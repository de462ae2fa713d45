"""A folder of up to 1 M files and a table of up to 10 M rows run through `catdog extract` with a
zero-cost embed step, measuring the driver's peak memory, the listing, the
time to the first shard, the commit, a re-run with nothing changed and `catdog status`, against the
number of images.

    python benchmarks/scale.py --json benchmarks/scale.json            # about 25 minutes on 2 cores
    python benchmarks/scale.py --table benchmarks/scale.json

The embed step is replaced in the benchmark's own driver process (never a user option): each shard
is written by the real `ShardWriter` with zero features (VGG16's 512 average-pooled values
at 32 px, which compress to little), in the driver, without Ray actors. Everything else is the real job: the streamed
listing, the comparison with OUT's index, the shard plan, the index written in order, the commit,
the manifest. The images are empty files (the folder) or paths that are never read (the table):
only the driver's bookkeeping is measured. Each run is a process of its own; its peak RSS is the
driver's whole memory, TensorFlow's import and Ray's included, so the figure to read is the growth
between sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

FOLDERS = (100_000, 1_000_000)
TABLES = (1_000_000, 10_000_000)
PER_FOLDER = 1000  # files per class folder
SHARD = 256


def make_folder(root: str, n: int) -> None:
    """n empty image files in class folders of PER_FOLDER (two classes, folders 0000, 0001, ...)."""
    for start in range(0, n, PER_FOLDER):
        folder = f"{root}/{'cats' if start // PER_FOLDER % 2 else 'dogs'}/{start // PER_FOLDER:05d}"
        os.makedirs(folder)
        for i in range(start, min(n, start + PER_FOLDER)):
            os.close(os.open(f"{folder}/{i:08d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))


def make_table(path: str, n: int) -> None:
    """n rows of paths over a few thousand files. names, with a label and a split, sorted by (split,
    path) as a table from a data warehouse query can be (`ORDER BY split, path`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.schema([("path", pa.string()), ("label", pa.string()), ("split", pa.string())])) as writer:
        for split, share in (("train", 0.8), ("validation", 0.2)):
            count = int(n * share)
            for start in range(0, count, 1_000_000):
                ids = range(start, min(count, start + 1_000_000))
                writer.write_table(pa.table({
                    "path": [f"/photos/{split}/{i:09d}/img-{i % 4096:04d}.jpg" for i in ids],
                    "label": ["cats" if i % 2 else "dogs" for i in ids],
                    "split": [split] * len(ids)}))


def child(argv: list[str]) -> None:
    """One `catdog extract` (or `status`) in this process, its embed step replaced; prints JSON."""
    import numpy as np

    from catdog import commands
    from catdog.extraction import pipeline

    def zero_cost(feed, root, config, weights, writer, resources, placement, stall_timeout=None):
        identity = json.dumps({"pid": os.getpid(), "node": "driver", "loaded_at": time.time(), "ray_gpu_ids": [],
                               "intra_op_threads": 0})
        dim = writer.schema.field("features").type.list_size
        while not feed.finished or feed.held:
            shard = feed.poll(0.2)
            if shard is None:
                continue
            began = time.perf_counter()
            rows = writer.write(shard.split, shard.name, list(shard.paths), np.asarray(shard.labels),
                                np.zeros((len(shard.paths), dim), np.float32), [], "driver")
            yield {"split": shard.split, "name": shard.name, "node": "driver", "rows": rows, "errors": 0,
                   "paths": list(shard.paths), "digests": [""] * len(shard.paths), "embedder": identity,
                   "decode_s": 0.0, "embed_s": 0.0, "write_s": time.perf_counter() - began}

    pipeline.extract_shards = zero_cost  # this benchmark's process only
    began = time.perf_counter()
    code = commands.main(argv)
    seconds = time.perf_counter() - began
    print(json.dumps({"code": code, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(argv: list[str]) -> dict:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True, cwd=PROJECT)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not last.startswith("{"):
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-3000:])
    result = {**json.loads(last), "process_s": time.perf_counter() - began}  # the whole command, Python's start included
    if result["code"] != 0:
        raise RuntimeError(done.stderr[-3000:])
    text = done.stdout
    for name, pattern in (("listing_s", r"listing ([\d.]+) s"), ("commit_s", r"commit ([\d.]+) s"),
                          ("first_shard_s", r"first shard ([\d.]+) s"), ("listed_s", r"listed ([\d.]+) s"),
                          ("pipeline_s", r"pipeline ([\d.]+) s")):
        found = re.search(pattern, text)
        result[name] = float(found.group(1)) if found else None
    return result


def extract_argv(root: str | None, out: str, *extra: str) -> list[str]:
    return ["extract", *([root] if root else []), "--out", out, "--weights", "none", "--image-size", "32", "--pooling", "avg",
            "--shard-size", str(SHARD), "--no-progress", *extra]


def measure(sizes: dict) -> dict:
    work = tempfile.mkdtemp(prefix="catdog-scale-")
    r = {"machine": _machine(), "shard_size": SHARD, "folders": [], "tables": []}
    for n in sizes["folders"]:
        root, out = f"{work}/folder-{n}", f"{work}/out-folder-{n}"
        began = time.perf_counter()
        make_folder(root, n)
        made = time.perf_counter() - began
        first = run(extract_argv(root, out))
        again = run(extract_argv(root, out))
        status = run(["status", out, root])
        r["folders"].append({"images": n, "make_s": made, "first": first, "nothing_changed": again, "status": status})
        print(f"folder {n}: {first}", file=sys.stderr)
    for n in sizes["tables"]:
        table, out = f"{work}/table-{n}.parquet", f"{work}/out-table-{n}"
        make_table(table, n)
        first = run(extract_argv(None, out, "--from-table", table))
        r["tables"].append({"images": n, "first": first})
        print(f"table {n}: {first}", file=sys.stderr)
    return r


def table(r: dict) -> str:
    lines = [f"machine: {r['machine']}; shards of {r['shard_size']}; zero-cost embed, the rest of the job real",
             f"{'input':<22}{'driver peak MB':>15}{'whole s':>9}{'listing s':>10}{'first shard s':>14}"
             f"{'commit s':>9}{'re-run s':>9}{'status s':>9}"]
    rows = [("folder", f) for f in r["folders"]] + [("table", t) for t in r["tables"]]
    for kind, m in rows:
        again, status = m.get("nothing_changed"), m.get("status")
        lines.append(f"{kind + ' ' + format(m['images'], ','):<22}{m['first']['peak_rss_mb']:>15.0f}"
                     f"{m['first']['process_s']:>9.1f}{m['first']['listing_s'] or 0:>10.1f}{m['first']['first_shard_s'] or 0:>14.1f}"
                     f"{m['first']['commit_s'] or 0:>9.1f}{_seconds(again):>9}{_seconds(status):>9}")
    for kind, ms in (("folder", r["folders"]), ("table", r["tables"])):
        if len(ms) >= 2:
            a, b = ms[0], ms[-1]
            slope = (b["first"]["peak_rss_mb"] - a["first"]["peak_rss_mb"]) * 1024 * 1024 / (b["images"] - a["images"])
            lines.append(f"{kind}: driver growth {slope:.0f} bytes per image from {a['images']:,} to {b['images']:,}")
    lines.append("whole, re-run (nothing changed) and status: each command's process, Python's start included; first shard: "
                 "seconds from the process start")
    return "\n".join(lines)


def _seconds(run: dict | None) -> str:
    return f"{run['process_s']:.1f}" if run else "-"


def _machine() -> str:
    name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs, {name}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--table", help="print the tables of a results file")
    parser.add_argument("--folders", type=int, nargs="*", default=list(FOLDERS))
    parser.add_argument("--tables", type=int, nargs="*", default=list(TABLES))
    args = parser.parse_args()
    if args.table:
        print(table(json.load(open(args.table))))
        sys.exit(0)
    results = measure({"folders": args.folders, "tables": args.tables})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))
