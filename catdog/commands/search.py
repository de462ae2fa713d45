"""`catdog search OUT IMAGE_OR_DIR... [--top K] [--out CSV]`: the stored images nearest to new photos."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import SearchConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("search", parents=[common], help="the stored images nearest to new photos")
    add_options(p, SearchConfig)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="photos (files or folders) to search for")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = catdog.search(args.features, args.images, **options(SearchConfig, args, "features", "images"))
    print("\n".join(result.lines()))
    return 0
