"""`catdog status OUT [ROOT]`: what OUT holds and, given ROOT, what a re-run would do."""

from __future__ import annotations

import argparse

import catdog


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("status", parents=[common], help="what OUT holds and, given ROOT, what a re-run would do")
    p.add_argument("out")
    p.add_argument("root", nargs="?", default=None, help="the image folder: compare it with OUT, changing nothing")
    p.add_argument("--verify", action="store_true",
                   help="read every committed file whole and name the damaged or missing ones (exit 1 if any)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    found = catdog.status(args.out, args.root, verify=args.verify)
    print("\n".join(found.lines()))
    return 0 if found.intact else 1
