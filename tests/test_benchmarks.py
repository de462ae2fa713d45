"""The benchmark script prints its table from the committed results, as BENCHMARKS.md says it does."""

import json
import os
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PROJECT, "benchmarks", "results.json")


def test_table_from_committed_results_has_every_figure():
    done = subprocess.run([sys.executable, os.path.join(PROJECT, "benchmarks", "throughput.py"), "--table", RESULTS],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    r = json.load(open(RESULTS))
    assert f"{r['ratios']['b/a']:.2f}" in done.stdout and f"{r['decode']['ms_per_image']:.2f} ms" in done.stdout
    assert f"{r['memory_8000']['images']:,}" in done.stdout and r["machine"]["cpu"] in done.stdout


def test_object_store_table_from_committed_results():
    results = os.path.join(PROJECT, "benchmarks", "object_store.json")
    done = subprocess.run([sys.executable, os.path.join(PROJECT, "benchmarks", "object_store.py"), "--table", results],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    r = json.load(open(results))
    assert f"{r['decode_s3_delay']:.1f}" in done.stdout and f"{r['gets_per_image']:.2f}" in done.stdout
    assert f"{r['extract_s3']['requests_per_image']:.2f}" in done.stdout


def test_incremental_table_from_committed_results():
    results = os.path.join(PROJECT, "benchmarks", "incremental.json")
    done = subprocess.run([sys.executable, os.path.join(PROJECT, "benchmarks", "incremental.py"), "--table", results],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    r = json.load(open(results))
    assert f"{r['rerun']['pipeline_seconds']:.1f}" in done.stdout and f"{r['listing']['compare_seconds']:.2f} s" in done.stdout
    assert r["rerun"]["processed"] == r["added"] and r["rerun"]["changes"] in done.stdout
