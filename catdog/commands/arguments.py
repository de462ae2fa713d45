"""What the command modules share: options from parsed flags, sizes like 2G, the columns of another
tool's embeddings."""

from __future__ import annotations

import argparse

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SHARED_FS_HELP = ("local ROOT/OUT paths are on a filesystem every node mounts at the same path; without it, "
                  "tasks reading or writing local paths run on this node")


def parse_bytes(text: str) -> int:
    number, unit = text.upper().rstrip("IB"), ""
    if number and number[-1] in UNITS:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def options(cls, args: argparse.Namespace, *skip: str) -> dict:
    """The fields of config class `cls` that have a flag, as keyword arguments for an API function."""
    return {n: getattr(args, n) for n in cls.__dataclass_fields__ if hasattr(args, n) and n not in skip}


def add_embedding_columns(p: argparse.ArgumentParser) -> None:
    """FEATURES may be another tool's embeddings (a Parquet file or folder) rather than catdog's OUT."""
    p.add_argument("--features-column", help="FEATURES is another tool's embeddings Parquet: its column of vectors "
                   "(a list of floats, e.g. clip-retrieval's 'embedding')")
    p.add_argument("--path-column", default="path", help="with --features-column: the column of image paths or URIs")
    p.add_argument("--label-column", help="with --features-column: the class column (default: label, if there)")
    p.add_argument("--split-column", help="with --features-column: the split column (default: split, if there)")
