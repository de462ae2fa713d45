"""`catdog report OUT [--model M] [--out DIR]`: a static site of what catdog found."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import ReportConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("report", parents=[common], help="a browsable HTML report of what catdog found in OUT")
    add_options(p, ReportConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = catdog.report(args.features, **options(ReportConfig, args, "features"))
    print("\n".join(result.lines()))
    return 0
