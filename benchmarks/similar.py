"""`catdog similar` and the feature map: time and memory of the exact nearest neighbours at 5,000
and 25,000 images, and of map.png's PCA + t-SNE on 2,000, each in a fresh process, in one run.

The features are synthetic (10 clusters of ReLU'd Gaussian vectors, 8192 floats like VGG16's at
150 px): the cost of a brute-force neighbour search and of t-SNE depends on the count and the
dimension, not on what the images show. With --features OUT, `catdog similar` also runs on real
extracted features and its summary is kept.

    python benchmarks/similar.py --features OUT --threshold 0.995 --json benchmarks/similar.json
    python benchmarks/similar.py --table benchmarks/similar.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.throughput import machine  # noqa: E402  one description of the machine for the benchmarks

DIM, COUNTS, MAP_POINTS = 8192, (5_000, 25_000), 2_000


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (10, DIM)).astype(np.float32)
    X = np.empty((n, DIM), np.float32)
    for start in range(0, n, 2048):  # in blocks: no float64 temporary of the whole matrix
        rows = min(2048, n - start)
        X[start : start + rows] = centres[rng.integers(0, 10, rows)] + rng.normal(0, 1, (rows, DIM)).astype(np.float32)
    return np.maximum(X, 0)


def part_neighbours(n: int) -> dict:
    from catdog.insight import similar

    X = synthetic(n)
    start = time.perf_counter()
    indices, _ = similar.neighbours(X, top=5, working_memory_mb=1024)
    return {"images": n, "seconds": time.perf_counter() - start, "peak_rss_gib": _peak_rss(),
            "features_gib": X.nbytes / 2**30, "found": int(indices.shape[1])}


def part_map(n: int) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    X = synthetic(n)
    start = time.perf_counter()
    reduced = PCA(n_components=50, random_state=0).fit_transform(X)
    pca = time.perf_counter() - start
    TSNE(perplexity=30.0, init="pca", random_state=0).fit_transform(reduced)
    return {"images": n, "pca_seconds": pca, "seconds": time.perf_counter() - start}


def part_real(out: str, threshold: str) -> dict:
    from catdog.config import SimilarConfig
    from catdog.insight import similar

    with tempfile.TemporaryDirectory() as report:
        summary = similar.run(SimilarConfig(features=out, report_dir=report, threshold=float(threshold)))
    return {"summary": summary, "lines": similar.lines(summary)}


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_part(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--part", *args], capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", help="an OUT of `catdog extract` to run `catdog similar` on as well")
    parser.add_argument("--threshold", default="0.95", help="the near-duplicate threshold for --features")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--table", help="print a saved results file and exit")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        kind, *values = args.part
        result = {"neighbours": lambda: part_neighbours(int(values[0])), "map": lambda: part_map(int(values[0])),
                  "real": lambda: part_real(*values)}[kind]()
        print(json.dumps(result))
        return
    if args.table:
        print(table(json.load(open(args.table))))
        return
    results = {"machine": machine(),
               "neighbours": [run_part("neighbours", str(n)) for n in COUNTS], "map": run_part("map", str(MAP_POINTS))}
    if args.features:
        results["real"] = run_part("real", args.features, args.threshold)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}", "",
             f"{'exact cosine neighbours (top 5), 8192 floats':<48}{'seconds':>9}{'features GiB':>14}{'peak RSS GiB':>14}"]
    for n in r["neighbours"]:
        lines.append(f"{n['images']:>8,} images{'':<33}{n['seconds']:>9.1f}{n['features_gib']:>14.2f}{n['peak_rss_gib']:>14.2f}")
    t = r["map"]
    lines += ["", f"map.png: PCA to 50 then t-SNE, {t['images']:,} images: {t['seconds']:.1f} s (PCA {t['pca_seconds']:.1f} s)"]
    if "real" in r:
        lines += ["", "catdog similar on real features:"] + [f"  {line}" for line in r["real"]["lines"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
