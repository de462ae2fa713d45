"""`catdog similar` at 100,000 and 1,000,000 images: exact against approximate search (time, peak
memory, recall), the run after a small change (incremental), and map.png's PCA + t-SNE; each job in
a fresh process, all in one run.

The embeddings are synthetic (`tests.generators.embeddings`: ReLU'd Gaussian vectors around 1,000
centres, 1 % of them near-copies of others, cosine about 0.99), written to Parquet as another tool
writes them and read by `catdog similar --features-column`: the whole command is timed, reading
included. The recall of planted copies is counted here against what was planted; the recall the
command reports is its own, against an exact search of a sample. The exact search of a million
rows is projected from 10,000 of its queries (it is quadratic: about an hour and a half here).

    python benchmarks/similar.py --json benchmarks/similar.json
    python benchmarks/similar.py --table benchmarks/similar.json
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

SETS = ((100_000, 512, ("exact", "approximate")), (1_000_000, 512, ("approximate",)), (25_000, 8192, ("exact", "approximate")))
CHANGED = 0.001  # of the rows replaced, and as many added, before the incremental run
EXACT_QUERIES, MAP_POINTS, THRESHOLD = 10_000, 2_000, 0.95


def write(n: int, dim: int, folder: str, seed: int = 0) -> str:
    """The embeddings Parquet and its planted pairs (paths); a changed copy for the incremental run."""
    import pyarrow as pa
    import pyarrow.parquet as pq


    X, planted, _ = generators.embeddings(n, dim, duplicates=n // 100, seed=seed)
    paths = np.array([f"img{i:07d}.jpg" for i in range(n)])
    np.save(os.path.join(folder, "planted.npy"), paths[planted])

    def table(X, paths):
        return pa.table({"path": paths, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), dim)})

    pq.write_table(table(X, paths), os.path.join(folder, "embeddings.parquet"), row_group_size=65536)
    changed = int(n * CHANGED)
    rng = np.random.default_rng(seed + 1)
    fresh = generators.embeddings(2 * changed, dim, seed=seed + 2).X
    free = np.setdiff1d(np.arange(n), planted.ravel())  # neither copy nor original: the planted pairs stay
    X[rng.choice(free, changed, replace=False)] = fresh[:changed]
    pq.write_table(table(np.concatenate([X, fresh[changed:]]), np.concatenate([paths, [f"new{i}.jpg" for i in range(changed)]])),
                   os.path.join(folder, "changed.parquet"), row_group_size=65536)
    return folder


def part_run(folder: str, name: str, report: str, method: str) -> dict:
    from catdog.config import SimilarConfig
    from catdog.insight import similar

    start = time.perf_counter()
    result = similar.run(SimilarConfig(features=os.path.join(folder, name), features_column="embedding",
                                       report_dir=report, threshold=THRESHOLD, method=method))
    seconds = time.perf_counter() - start
    planted = {tuple(sorted(p)) for p in np.load(os.path.join(folder, "planted.npy")).tolist()}
    found = {(p.a, p.b) for p in result.pairs}
    s, u = result.search, result.update
    return {"images": result.images, "method": s.method if s else "incremental", "seconds": seconds,
            "search_seconds": result.seconds, "peak_rss_gib": peak_rss_gib(), "pairs": len(found),
            "planted_found": len(planted & found) / len(planted),
            "search": None if s is None else {k: v for k, v in s.__dict__.items() if k != "recall"},
            "recall": None if s is None or s.recall is None else s.recall.__dict__,
            "update": None if u is None else u.__dict__}


def part_exact_rate(n: int, dim: int) -> dict:
    """Exact neighbours of EXACT_QUERIES rows among n: the full search's time projected from them."""
    from catdog.insight import neighbours

    X = generators.embeddings(n, dim).X
    U = neighbours.unit(X, copy=False)
    start = time.perf_counter()
    neighbours.exact(U[:EXACT_QUERIES], U, 6)
    seconds = time.perf_counter() - start
    return {"images": n, "queries": EXACT_QUERIES, "seconds": seconds, "projected_seconds": seconds * n / EXACT_QUERIES}


def part_map(n: int) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE


    X = generators.embeddings(n, 8192, clusters=10).X
    start = time.perf_counter()
    reduced = PCA(n_components=50, random_state=0).fit_transform(X)
    pca = time.perf_counter() - start
    TSNE(perplexity=30.0, init="pca", random_state=0).fit_transform(reduced)
    return {"images": n, "pca_seconds": pca, "seconds": time.perf_counter() - start}




def part(kind: str, *values: str) -> dict:
    return {"run": lambda: part_run(*values), "map": lambda: part_map(int(values[0])),
            "exact_rate": lambda: part_exact_rate(int(values[0]), int(values[1]))}[kind]()


def measure() -> dict:
    results = {"machine": machine(), "threshold": THRESHOLD, "changed": CHANGED, "sets": []}
    for n, dim, methods in SETS:
        with tempfile.TemporaryDirectory() as folder:
            write(n, dim, folder)
            runs = []
            for method in methods:
                report = os.path.join(folder, f"report-{method}")
                runs.append(run_part(__file__, "run", folder, "embeddings.parquet", report, method))
                print(json.dumps(runs[-1]), flush=True)
            runs.append(run_part(__file__, "run", folder, "changed.parquet", report, methods[-1]))  # the last method's lists
            print(json.dumps(runs[-1]), flush=True)
        entry = {"images": n, "dim": dim, "features_gib": n * dim * 4 / 2**30, "runs": runs}
        if "exact" not in methods:
            entry["exact_projected"] = run_part(__file__, "exact_rate", str(n), str(dim))
        results["sets"].append(entry)
    results["map"] = run_part(__file__, "map", str(MAP_POINTS))
    return results


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}", "",
             f"`catdog similar` (top 5, threshold {r['threshold']}) on embeddings Parquet; incremental: the run after "
             f"{r['changed']:.1%} of the rows changed and as many added.", "",
             "| images × dims | search | whole command | search part | peak RSS | beyond the features | "
             "planted pairs found | recall (sample): neighbours / pairs |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in r["sets"]:
        for run in entry["runs"]:
            s, recall = run["search"], run["recall"]
            how = run["method"] if not s or s["method"] == "exact" else \
                f"approximate ({s['index']}, {s['probes']} probes" + (f", PCA {s['pca_dims']}" if s["pca_dims"] else "") + ")"
            if run["update"]:
                how += f" ({run['update']['added']:,} added/changed)"
            measured = "" if not recall else f"{recall['neighbours']:.3f} / " + (
                f"{recall['pairs_found']:.3f} of {recall['pairs']}" if recall["pairs_found"] is not None else "no pair")
            lines.append(f"| {entry['images']:,} × {entry['dim']} | {how} | {run['seconds']:.1f} s | {run['search_seconds']:.1f} s "
                         f"| {run['peak_rss_gib']:.2f} GiB | {run['peak_rss_gib'] - entry['features_gib']:.2f} GiB "
                         f"| {run['planted_found']:.4f} | {measured} |")
        if "exact_projected" in entry:
            e = entry["exact_projected"]
            lines.append(f"| {entry['images']:,} × {entry['dim']} | exact, projected from {e['queries']:,} queries "
                         f"({e['seconds']:.1f} s) | | {e['projected_seconds'] / 60:.0f} min | | | | |")
    t = r["map"]
    lines += ["", f"map.png: PCA to 50 then t-SNE, {t['images']:,} images: {t['seconds']:.1f} s (PCA {t['pca_seconds']:.1f} s)"]
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, part, measure, table)
