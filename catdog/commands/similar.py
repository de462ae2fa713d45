"""`catdog similar OUT`: near-duplicate images and leakage across splits."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_embedding_columns, options
from catdog.config import SIMILAR_METHODS, SimilarConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("similar", parents=[common], help="near-duplicate images and leakage across splits")
    p.add_argument("features", help="the OUT folder of `catdog extract` (or, with --features-column, embeddings "
                   "another tool wrote)")
    p.add_argument("--out", dest="report_dir", default=None,
                   help="folder for similar.csv, similar.json, similar.png (default OUT/similar)")
    s = SimilarConfig(features="")
    p.add_argument("--threshold", type=float, default=s.threshold, help="cosine similarity of a near-duplicate")
    p.add_argument("--top", type=int, default=s.top, help="nearest neighbours looked at per image")
    p.add_argument("--method", choices=SIMILAR_METHODS, default=s.method,
                   help="exact search, an approximate index (faiss IVF, re-ranked exactly, recall measured), or "
                   "auto: exact while it is quick (default)")
    p.add_argument("--probes", type=int, default=s.probes, help="approximate: index cells looked in per image")
    p.add_argument("--pca-dims", type=int, default=s.pca_dims,
                   help="approximate: PCA components searched (default 256 for vectors wider than 512; 0: none)")
    p.add_argument("--full", action="store_true",
                   help="search every image again (default: only what changed since the last run into the same --out)")
    add_embedding_columns(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.similar(args.features, **options(SimilarConfig, args, "features"))
    print("\n".join(report.lines()))
    return 0
