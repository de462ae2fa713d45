"""Write BENCHMARKS.md from the benchmark scripts' results files, each script printing its own tables:

    python benchmarks/benchmarks_md.py            # after any benchmark run; BENCHMARKS.md is never edited by hand
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
# (script, its results file, the section title), in the order BENCHMARKS.md shows them
SECTIONS = (
    ("throughput.py", "throughput.json", "Extraction throughput, memory and Parquet"),
    ("object_store.py", "object_store.json", "Reading from an object store"),
    ("backbones.py", "backbones.json", "Backbones"),
    ("incremental.py", "incremental.json", "Incremental runs"),
    ("scale.py", "scale.json", "The driver at scale"),
    ("estimate.py", "estimate.json", "Estimates against runs"),
    ("predict.py", "predict.json", "Predictions at scale: the head in the extraction actors"),
    ("similar.py", "similar.json", "Near-duplicates at a million images, and the feature map"),
    ("similar_ray.py", "similar_ray.json", "Near-duplicates on Ray: the driver holds no vector"),
    ("audit.py", "audit.json", "Label errors found by the audit"),
    ("audit_ray.py", "audit_ray.json", "The audit on Ray: the driver holds no vector"),
    ("report.py", "report.json", "The HTML report"),
    ("train_startup.py", "train_startup.json", "End-to-end training start-up"),
)
HEADER = """# Benchmarks

The current figures, one section per benchmark script, written by `python benchmarks/benchmarks_md.py` from the results files in `benchmarks/` (one per script). Every figure was measured by the script named in its section, and every speed claim is a ratio of two measurements taken side by side in one run on one machine: figures from different machines or days are not comparable. How to read them: [docs/performance.md](docs/performance.md).
GPU speed cannot be measured where these ran (no GPU); the GPU path is sized there on paper.
"""


def section(script: str, results: str, title: str) -> str:
    path = os.path.join(HERE, script)
    doc = ast.get_docstring(ast.parse(open(path).read())) or ""
    done = subprocess.run([sys.executable, path, "--table", os.path.join(HERE, results)], capture_output=True,
                          text=True, check=True, cwd=PROJECT)
    what = " ".join(doc.split("\n\n")[0].split())  # the docstring's first paragraph: what the script measures
    parts = [f"## {title}\n{what} (`benchmarks/{script}`, results in `benchmarks/{results}`.)\n"]
    for block in done.stdout.strip().split("\n### "):  # a script's own sub-headings: one table per kind of machine
        heading, _, text = block.partition("\n") if block.startswith("### ") or parts[1:] else ("", "", block)
        parts.append((f"### {heading.removeprefix('### ')}\n\n" if heading else "") + f"```text\n{text.strip()}\n```\n")
    return "".join(parts)  # a table right under its text: BENCHMARKS.md stays short


def markdown() -> str:
    return "\n".join([HEADER, *(section(*s) for s in SECTIONS)])


if __name__ == "__main__":
    with open(os.path.join(PROJECT, "BENCHMARKS.md"), "w") as f:
        f.write(markdown())
