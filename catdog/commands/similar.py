"""`catdog similar OUT`: near-duplicate images and leakage across splits."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_embedding_columns, options
from catdog.config import SimilarConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("similar", parents=[common], help="near-duplicate images and leakage across splits")
    p.add_argument("features", help="the OUT folder of `catdog extract` (or, with --features-column, embeddings "
                   "another tool wrote)")
    p.add_argument("--out", dest="report_dir", default=None,
                   help="folder for similar.csv, similar.json, similar.png (default OUT/similar)")
    s = SimilarConfig(features="")
    p.add_argument("--threshold", type=float, default=s.threshold, help="cosine similarity of a near-duplicate")
    p.add_argument("--top", type=int, default=s.top, help="nearest neighbours looked at per image")
    p.add_argument("--working-memory-mb", type=int, default=s.working_memory_mb,
                   help="size of the distance-matrix block computed at once")
    add_embedding_columns(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.similar(args.features, **options(SimilarConfig, args, "features"))
    print("\n".join(report.lines()))
    return 0
