"""`catdog audit OUT`: likely label errors, outliers and the health of each class."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_embedding_columns, options
from catdog.config import AuditConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("audit", parents=[common], help="likely label errors, outliers and each class's health")
    p.add_argument("features", help="the OUT folder of `catdog extract` (or, with --features-column, embeddings "
                   "another tool wrote)")
    p.add_argument("--out", dest="report_dir", default=None,
                   help="folder for label_issues.csv, outliers.csv, audit.json and contact sheets (default OUT/audit)")
    a = AuditConfig(features="")
    p.add_argument("--folds", type=int, default=a.folds, help="folds of the out-of-fold probabilities")
    p.add_argument("--neighbours", type=int, default=a.neighbours, help="k: an outlier's distance is to its k-th "
                   "nearest image of its class")
    p.add_argument("--outlier-z", type=float, default=a.outlier_z, help="robust z-score above which it is an outlier")
    p.add_argument("--seed", type=int, default=a.seed)
    p.add_argument("--duplicate-threshold", type=float, default=a.duplicate_threshold,
                   help="cosine similarity of a near-duplicate pair")
    add_embedding_columns(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.audit(args.features, **options(AuditConfig, args, "features"))
    print("\n".join(report.lines()))
    return 0
