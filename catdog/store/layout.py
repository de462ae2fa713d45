"""Every name in an OUT folder, in one place (the contract is docs/output-format.md):

  features/split=SPLIT/part-NNNNN-DIGEST.parquet   one file per shard, committed whole (part-gN-... from
                                                   incremental run N, ...-rN.parquet rewritten by it)
  errors/split=SPLIT/part-NNNNN-DIGEST.parquet     the images of that shard that could not be decoded
  predictions/split=SPLIT/part-...parquet          instead of features/: `catdog predict`'s Parquet output
  index.parquet                                    which file holds each image's row, and its stamp
  manifest.json                                    the settings OUT is pinned to, the last run, totals
  .catdog.lock                                     held by the one job writing OUT
  _staging/gen-N/...                               an incremental run's shards before their commit
  _tmp/                                            files being written, renamed into place when whole
  similar/                                         `catdog similar`'s report when no folder is given
"""

from __future__ import annotations

FEATURES_DIR = "features"
ERRORS_DIR = "errors"
PREDICTIONS_DIR = "predictions"  # a predictions folder's rows: a model's answers instead of features
KINDS = (FEATURES_DIR, ERRORS_DIR, PREDICTIONS_DIR)
INDEX = "index.parquet"
MANIFEST = "manifest.json"
LOCK = ".catdog.lock"
STAGING = "_staging"
TMP_DIR = "_tmp"
SIMILAR = "similar"


def shard_file(kind: str, split: str, name: str) -> str:
    """A shard's file relative to OUT (or to a staging folder)."""
    return f"{kind}/split={split}/{name}"


def staging(generation: int) -> str:
    """Where incremental run `generation` stages its shards, relative to OUT."""
    return f"{STAGING}/gen-{generation}"


def rewritten(file: str, generation: int) -> str:
    """The name a committed file takes when generation `generation` rewrites it without some rows."""
    return f"{file[: -len('.parquet')]}-r{generation}.parquet"
