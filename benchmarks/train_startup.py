"""A small `catdog train-e2e` run with catdog's Ray Train backend (`catdog.e2e.multiworker`) and with Ray's
own `TensorflowConfig`, interleaved; every run a fresh process, timed from its start to its exit as a
user waits for it (its Ray start and its driver's imports count). Ray's config is swapped in here only.

    python benchmarks/train_startup.py [FOLDER] [--rounds 3] [--workers 2] [--out benchmarks/train_startup.json]

FOLDER holds train/CLASS/* and validation/CLASS/*; without it a demo folder of 48 small images is made.
The run is tiny on purpose (1 epoch, 32 px): what it measures is what comes before the training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.throughput import machine  # noqa: E402

VARIANTS = ("catdog", "ray")


def one_run(variant: str, root: str, out: str, workers: int) -> None:
    """In the child process: one train-e2e run with the given backend config."""
    from catdog.config import TrainConfig
    from catdog.e2e import fit_e2e, multiworker

    if variant == "ray":
        from ray.train.tensorflow import (
            TensorflowConfig,  # imports TensorFlow, as Ray Train's controller then does
        )

        multiworker.MultiWorkerConfig = TensorflowConfig
    started = time.time()
    fit_e2e.run(TrainConfig(root=root, out=out, num_workers=workers, image_size=32, batch_size=4, weights="none",
                            learning_rate=1e-3, epochs=1))
    print(json.dumps({"fit_seconds": time.time() - started, "tensorflow_in_driver": "tensorflow" in sys.modules}))


def timed(variant: str, root: str, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.time()
        done = subprocess.run([sys.executable, __file__, "--one", variant, root, os.path.join(out, "run"), str(workers)],
                              capture_output=True, text=True, check=True)
        whole = time.time() - started
    return {"variant": variant, "seconds": whole, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        variant, root, out, workers = sys.argv[2:6]
        one_run(variant, root, out, int(workers))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "train_startup.json"))
    parser.add_argument("--table", metavar="RESULTS_JSON", help="only print the table of a saved run")
    args = parser.parse_args()
    if args.table:
        print(table(json.load(open(args.table))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder
        if not root:
            from catdog import synthetic

            root = os.path.join(tmp, "demo")
            synthetic.make_demo_folder(root, per_class=8, size=40)
        runs = []
        for r in range(args.rounds):  # ABBA order, so a drift of the machine's speed weighs on both alike
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                runs.append(timed(variant, root, args.workers))
                print(f"{variant:7} {runs[-1]['seconds']:6.1f} s whole, {runs[-1]['fit_seconds']:6.1f} s in fit_e2e.run",
                      flush=True)
    summary = {v: {"median_seconds": statistics.median(r["seconds"] for r in runs if r["variant"] == v),
                   "median_fit_seconds": statistics.median(r["fit_seconds"] for r in runs if r["variant"] == v)}
               for v in VARIANTS}
    r = {"folder": args.folder or "demo (8 per class and split, 40 px)", "workers": args.workers,
         "machine": machine(), "runs": runs, "summary": summary}
    with open(args.out, "w") as f:
        json.dump(r, f, indent=2)
    print(table(r))


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; {m['versions']}",
             f"{r['workers']} workers, {r['folder']}; {len(r['runs'])} runs, ABBA"]
    lines += [f"{v:7} median {s['median_seconds']:.1f} s whole, {s['median_fit_seconds']:.1f} s in fit_e2e.run"
              for v, s in r["summary"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
