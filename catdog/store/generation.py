"""An incremental run's commit, all or nothing for readers of OUT.

A run over a changed ROOT writes its shards under OUT/_staging/gen-N, out of readers' sight, and
resumes there if killed. Then it commits: the plan of the commit (files to move in, files holding
superseded rows to rewrite without them) is recorded in the manifest first, then carried out; a
run killed while carrying it out leaves the record, and the next run (or any `catdog` command that
writes OUT) carries it out again: every step can be done twice. Committed shard files are never
edited: a file losing rows is rewritten under a new name and the old one deleted.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from catdog.storage import Location
from catdog.store import features, index, layout
from catdog.store.index import Changes, Row
from catdog.store.layout import rewritten


def staged_files(stage: Location) -> list[str]:
    """The shard files a run has staged, relative to its staging folder (and so to OUT)."""
    return sorted(layout.shard_file(kind, split, name) for kind in layout.KINDS
                  for split, name in features.committed(stage, kind))


def plan(generation: int, staged: list[str], changes: Changes) -> dict:
    """The commit record: what to move in, and which committed files lose which rows."""
    rewrite = {file: sorted(paths) for file, paths in sorted(changes.superseded.items())}
    return {"generation": generation, "add": staged, "rewrite": rewrite}


def next_index(previous: Iterable[Row], record: dict, added: Iterable[Row]) -> Iterator[Row]:
    """The index once `record` is carried out, streamed in order: superseded images gone, rewritten
    files renamed, new ones in."""
    renamed = {f: rewritten(f, record["generation"]) for f in record["rewrite"]}
    return index.merged(previous, record["rewrite"], renamed, added)


def carry_out(out: Location, record: dict) -> None:
    """Write the rewritten files, move the staged files in, then the new index (the switch for
    readers, who read the files an index names), and only then delete the files it no longer names.
    Idempotent: each step is skipped or done again alike."""
    stage = out.join(layout.staging(record["generation"]))
    for file, paths in record["rewrite"].items():
        features.write_without(out, file, set(paths), rewritten(file, record["generation"]))
    for file in record["add"] + [layout.INDEX]:
        source = stage.join(file)
        if source.exists():
            if out.is_local:
                out.fs.create_dir(out.join(file).path.rsplit("/", 1)[0], recursive=True)
            out.fs.move(source.path, out.join(file).path)
    for file in record["rewrite"]:
        out.join(file).delete()
    out.join(layout.STAGING).delete()  # this generation's folder and any a killed run over another listing left
