"""`catdog similar OUT`: near-duplicate images and leakage across splits."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import SimilarConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("similar", parents=[common], help="near-duplicate images and leakage across splits")
    add_options(p, SimilarConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.similar(args.features, **options(SimilarConfig, args, "features"))
    print("\n".join(report.lines()))
    return 0
