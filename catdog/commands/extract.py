"""`catdog extract ROOT --out OUT` (or `--from-table TABLE`): images -> conv-base features in Parquet, on Ray."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import ExtractConfig
from catdog.errors import CatdogError


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("extract", parents=[common], help="images -> conv-base features in Parquet, on Ray")
    p.add_argument("root", nargs="?", help="image folder (local path or s3://, gs://, ... URI)")
    p.add_argument("--from-table", metavar="TABLE", help="instead of ROOT: a Parquet or CSV table with a row per "
                   "image (a path or URI, optionally a class and a split)")
    p.add_argument("--out", help="output folder (path or URI)")
    p.add_argument("--estimate", action="store_true", help="run a sample of the shards (not into OUT) and project "
                   "the whole job's wall time and CPU/GPU-hours on this cluster")
    add_options(p, ExtractConfig, "root", "out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.root is None) == (args.from_table is None):
        raise CatdogError("give an image folder ROOT or --from-table TABLE (one of them)")
    chosen = options(ExtractConfig, args, "root", "out", "from_table")
    source = args.root or args.from_table
    if args.estimate:
        print("\n".join(catdog.estimate(source, from_table=args.from_table is not None, **chosen).lines()))
        return 0
    if not args.out:
        raise CatdogError("give --out OUT: where the features go")
    result = catdog.extract(source, args.out, from_table=args.from_table is not None, **chosen)
    print("\n".join(result.lines()))
    return 0
