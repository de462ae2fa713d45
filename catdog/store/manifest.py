"""OUT's manifest.json: the settings OUT is pinned to, the state of the last run, its totals.

Resume rests on two facts: a shard is done exactly when its features file exists (files are
committed whole), and an OUT is only ever continued by a job with the same pinned settings
(`Manifest.compat`). `read` and `write` are the only code that touches the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field

from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store import layout
from catdog.store.files import write_text

STATUSES = ("running", "complete")


@dataclass(frozen=True)
class Manifest:
    compat: dict  # what a later run must share to continue OUT (feature settings, ROOT, shard size)
    features: dict  # the feature metadata, as in every features file's footer
    config: dict  # the last run's extract settings (catdog.config.ExtractConfig as a dict)
    status: str = "running"  # "complete" once a run has committed everything it planned
    generation: int = 1  # the last committed generation: 1 for the first run, +1 per incremental run
    plan: dict = field(default_factory=dict)  # images, shards and a digest of the last run's plan
    precision_auto: str | None = None  # what --precision auto chose and why
    written_by: dict[str, str] = field(default_factory=dict)  # "split/file" -> the Ray node that wrote it
    totals: dict = field(default_factory=dict)  # images, errors, shards, actors of a complete run
    timeline: dict[str, float] = field(default_factory=dict)  # seconds from the process start to each mark
    cost: dict = field(default_factory=dict)  # the last run's stage times and cost (catdog.extraction.cost.Cost)
    committing: dict | None = None  # an incremental commit under way (catdog.store.generation.plan)
    last_changes: str | None = None  # what the last incremental run found changed in ROOT
    catdog_version: str = ""
    updated: str = ""  # UTC time of the last write

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if not isinstance(self.generation, int) or self.generation < 1:
            raise ValueError(f"generation must be a positive integer, got {self.generation!r}")
        for name in ("compat", "features", "config"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be an object")

    def replace(self, **changes) -> "Manifest":
        return dataclasses.replace(self, **changes)

    @property
    def complete(self) -> bool:
        return self.status == "complete" and self.committing is None


def read(out: Location) -> Manifest | None:
    """OUT's manifest, None where there is none, a one-line error where it is damaged."""
    file = out.join(layout.MANIFEST)
    if not file.exists():
        return None
    try:
        raw = json.loads(file.read_bytes())
        known = {f.name for f in dataclasses.fields(Manifest)}
        return Manifest(**{k: v for k, v in raw.items() if k in known})  # newer versions may add keys
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; a missing key a TypeError
        raise CatdogError(f"{file} is damaged ({str(exc).splitlines()[0]}): re-run with --overwrite, "
                          "or restore it") from None


def write(out: Location, manifest: Manifest) -> None:
    updated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = dataclasses.asdict(manifest.replace(updated=updated))
    write_text(out, layout.MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")


def differences(previous: dict, current: dict) -> list[str]:
    """The settings whose values differ between two compat records, sorted."""
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def prepare(out: Location, compat: dict, overwrite: bool) -> None:
    """Make OUT ready for a job with settings `compat`: new, resumable, or cleared by --overwrite."""
    if overwrite:
        for name in (*layout.KINDS, layout.TMP_DIR, layout.STAGING, layout.INDEX, layout.MANIFEST):
            out.join(name).delete()
        return
    previous = read(out)
    has_data = any(out.join(d).exists() for d in layout.KINDS)
    if previous is None and has_data:
        raise CatdogError(f"{out} holds features but no {layout.MANIFEST}; use --overwrite or another --out")
    if previous is not None and previous.compat != compat:
        raise CatdogError(
            f"{out} was made with other settings ({', '.join(differences(previous.compat, compat))} differ); "
            "use --overwrite to replace it, or another --out"
        )
    clear_tmp(out)  # leftovers of an interrupted run


def clear_tmp(out: Location) -> None:
    out.join(layout.TMP_DIR).delete()


def require_complete(out: Location) -> None:
    """Refuse features an extraction has not finished writing: a head or a similarity search on them
    would quietly miss images (or whole splits). Features without a manifest (written by another
    tool) are taken as they are."""
    recorded = read(out)
    if recorded is not None and not recorded.complete:
        raise CatdogError(f"{out} is not complete: its last `catdog extract` was interrupted; run the same "
                          "command again to finish it")
