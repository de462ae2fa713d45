"""`catdog head OUT --model-dir M`: train and evaluate a classifier on extracted features."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import options, parse_bytes
from catdog.config import HEAD_MODELS, HeadConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("head", parents=[common], help="train and evaluate a classifier on extracted features")
    p.add_argument("features", help="the OUT folder of `catdog extract`")
    p.add_argument("--model", choices=HEAD_MODELS, default="logreg")
    p.add_argument("--model-dir", required=True, help="where the model, report and figures go")
    h = HeadConfig(features="", model_dir="")
    p.add_argument("--epochs", type=int, default=h.epochs)
    p.add_argument("--batch-size", type=int, default=h.batch_size)
    p.add_argument("--learning-rate", type=float, default=h.learning_rate)
    p.add_argument("--units", type=int, default=h.units)
    p.add_argument("--dropout", type=float, default=h.dropout)
    p.add_argument("--max-memory", type=parse_bytes, default=h.max_memory, help="e.g. 2G; above it, stream from Parquet")
    p.add_argument("--seed", type=int, default=h.seed)
    p.add_argument("--validation-split", type=float, default=None,
                   help="a folder without splits (ROOT/CLASS/*): the share held out for validation (default 0.2)")
    p.add_argument("--test-split", type=float, default=None,
                   help="a folder without splits: the share held out for test (default 0.2)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.fit_head(args.features, args.model_dir, **options(HeadConfig, args, "features", "model_dir"))
    print("\n".join(report.lines()))
    return 0
