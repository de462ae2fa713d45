"""`catdog report` on a generated OUT with a small picture behind every row, at 1,000 and 100,000 rows:
the time to write the site (the audit it runs first timed apart), its size, a re-run's time (the
thumbnails kept), and how long the first page and the label-issues page take to show in headless
Chromium (the median of five loads from disk); each size in a fresh process, all in one run.

The features are synthetic (`tests.generators.features_out`: 5 overlapping classes of 16 floats,
thousands of likely label errors at 100,000 rows); the pictures are 32 px coloured shapes.

    python benchmarks/report.py --json benchmarks/report.json
    python benchmarks/report.py --table benchmarks/report.json
"""

from __future__ import annotations

import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from benchmarks.parts import command, peak_rss_gib, run_part  # noqa: E402
from benchmarks.throughput import machine  # noqa: E402  one description of the machine for the benchmarks
from tests import generators  # noqa: E402

SIZES = (1_000, 100_000)
LOADS = 5
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def part_report(rows: str, folder: str) -> dict:
    import catdog
    from catdog.config import AuditConfig
    from catdog.insight import audit

    out = generators.features_out(pathlib.Path(folder), int(rows), images=True)
    started = time.perf_counter()
    audit.run(AuditConfig(features=out.path))
    audited = time.perf_counter() - started
    started = time.perf_counter()
    result = catdog.report(out.path)
    first = time.perf_counter() - started
    started = time.perf_counter()
    catdog.report(out.path)
    again = time.perf_counter() - started
    site = pathlib.Path(out.path) / "report"
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    return {"rows": int(rows), "audit_seconds": audited, "report_seconds": first, "rerun_seconds": again,
            "site_mib": size / 2**20, "thumbnails": result.thumbnails, "label_issues": result.counts["label_issues"],
            "first_page_ms": load_ms(result.index, "overview", "#totals"),
            "label_issues_ms": load_ms(result.index, "label_issues", "#rows"), "peak_rss_gib": peak_rss_gib()}


def load_ms(index: str, page: str, selector: str) -> float:
    """Median milliseconds from navigation to the page drawn, over LOADS fresh tabs."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        for _ in range(LOADS):
            tab = browser.new_page()
            started = time.perf_counter()
            tab.goto(f"file://{os.path.abspath(index)}#{page}")
            tab.wait_for_selector(selector)
            times.append((time.perf_counter() - started) * 1000)
            tab.close()
        browser.close()
    return statistics.median(times)


def measure() -> dict:
    results = {"machine": machine(), "runs": []}
    for rows in SIZES:
        with tempfile.TemporaryDirectory() as folder:
            results["runs"].append(run_part(__file__, "report", str(rows), folder))
    return results


def table(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}",
             "| rows | label issues | thumbnails | audit | report | re-run | site | first page | label issues page | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lines.append(f"| {x['rows']:,} | {x['label_issues']:,} | {x['thumbnails']:,} | {x['audit_seconds']:.1f} s "
                     f"| {x['report_seconds']:.1f} s | {x['rerun_seconds']:.1f} s | {x['site_mib']:.1f} MiB "
                     f"| {x['first_page_ms']:.0f} ms | {x['label_issues_ms']:.0f} ms | {x['peak_rss_gib']:.2f} GiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    command(__doc__, lambda kind, rows, folder: part_report(rows, folder), measure, table)
