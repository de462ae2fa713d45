"""OUT's committed files read whole: which cannot be read (truncated, overwritten, half-copied) and
which the index names but are gone. `catdog status --verify` reports them; `catdog extract --repair`
extracts their images again."""

from __future__ import annotations

from dataclasses import dataclass

from catdog.storage import Location
from catdog.store import features, index, layout


@dataclass(frozen=True)
class Damage:
    files: int  # committed files read whole
    damaged: tuple[str, ...]  # of those, the ones that cannot be read (relative to OUT)
    missing: tuple[str, ...]  # files the index names that are not in OUT

    @property
    def found(self) -> tuple[str, ...]:
        return self.damaged + self.missing


def verify(out: Location) -> tuple[Damage, index.Index | None]:
    """Every committed file read whole, and the index (whose own damage is one line: it cannot be
    repaired, only written again with --overwrite). Returns the damage and the index read."""
    present = {layout.shard_file(kind, split, name) for kind in layout.KINDS for split, name in features.committed(out, kind)}
    damaged = tuple(file for file in sorted(present) if features.damaged(out, file))
    indexed = index.read(out)
    missing = tuple(sorted({e.file for e in indexed.values() if e.file not in present})) if indexed else ()
    return Damage(len(present), damaged, missing), indexed
