"""`catdog train-e2e ROOT --out RUN`: the frozen conv base and head trained end to end on Ray Train."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import TrainConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("train-e2e", parents=[common],
                            help="train a frozen conv base + head end-to-end on augmented images, on Ray Train")
    add_options(p, TrainConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = catdog.fit_e2e(args.root, args.out, **options(TrainConfig, args, "root", "out"))
    print("\n".join(result.lines()))
    return 0
