"""The `catdog` command: one module per command, each a thin layer over a `catdog.api` function."""

from __future__ import annotations

import argparse
import os
import sys

from catdog import quiet
from catdog.commands import (
    audit,
    demo,
    explain,
    extract,
    head,
    predict,
    report,
    search,
    similar,
    status,
    terminal,
    train_e2e,
)
from catdog.errors import CatdogError

COMMANDS = (extract, status, head, predict, explain, similar, audit, report, search, train_e2e, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catdog", description="Conv-base features of photo folders on Ray, "
                                     "stored as Parquet; classifiers, explanations and data checks on them.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's and Ray's own log lines too")
    for command in COMMANDS:
        command.add(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet.set_verbose(args.verbose)
    if not args.verbose:
        # TensorFlow's documented switch for its C++ INFO and WARNING lines, for this process and,
        # through the runtime env, for Ray's workers; a user's own setting is kept.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with terminal.info_lines_dropped(enabled=not args.verbose), terminal.stopped_by_signals():
            return args.run(args)
    except (CatdogError, OSError) as exc:
        # An OSError: a disk or store refusing what a command writes or reads outside catdog's own
        # checks (a full disk under a model folder, a folder without permission), in the system's words.
        if args.verbose and not isinstance(exc, CatdogError):
            raise
        print(f"catdog: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2 if isinstance(exc, CatdogError) else 1
    except (KeyboardInterrupt, terminal.Terminated) as exc:
        how = "terminated" if isinstance(exc, terminal.Terminated) else "interrupted"
        print(f"catdog: {how}; committed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, terminal.Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
