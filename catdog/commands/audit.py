"""`catdog audit OUT`: likely label errors, outliers and the health of each class."""

from __future__ import annotations

import argparse

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import AuditConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("audit", parents=[common], help="likely label errors, outliers and each class's health")
    add_options(p, AuditConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = catdog.audit(args.features, **options(AuditConfig, args, "features"))
    print("\n".join(report.lines()))
    return 0
