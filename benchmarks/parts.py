"""A benchmark's measurement in a fresh process of its own: its peak memory and thread pools are its
own, and nothing it imported is warm."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_part(script: str, *args: str) -> dict:
    """`python SCRIPT --part ARGS...` from the project folder; the JSON its last line prints."""
    done = subprocess.run([sys.executable, script, "--part", *args], capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_gib() -> float:
    """This process's peak resident memory so far: VmHWM, the high-water mark of its own memory.
    Not getrusage's ru_maxrss, which Linux carries across fork and exec: a part started by a parent
    holding gigabytes (the data it generated) would report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux, bytes on macOS (~)


def command(doc: str, part, measure, table) -> None:
    """A benchmark script's command line: `--part ARGS...` runs one measurement (in the fresh process
    `run_part` started) and prints its JSON; `--table FILE` prints saved results; otherwise `measure()`
    runs them all, its table is printed and, with `--json FILE`, the results are saved."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--table", help="print a saved results file and exit")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(part(*args.part)))
        return
    if args.table:
        print(table(json.load(open(args.table))))
        return
    results = measure()
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
