"""`catdog head OUT --model-dir M`: train and evaluate a classifier on extracted features."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import HeadConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("head", parents=[common], help="train and evaluate a classifier on extracted features")
    add_options(p, HeadConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.fit_head(args.features, args.model_dir, **options(HeadConfig, args, "features", "model_dir"))
    print("\n".join(report.lines()))
    return 0
