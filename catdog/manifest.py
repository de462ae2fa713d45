"""OUT's own state: the manifest that pins a job's configuration, and the lock against a second job.

Resume rests on two facts: a shard is done exactly when its features file exists (files are
committed by rename), and an OUT is only ever continued by a job with the same configuration.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from contextlib import contextmanager
from typing import Iterator

from catdog import features, storage
from catdog.errors import CatdogError
from catdog.storage import Location

MANIFEST = "manifest.json"
LOCK = ".catdog.lock"


def read(out: Location) -> dict | None:
    file = out.join(MANIFEST)
    return json.loads(file.read_bytes()) if file.exists() else None


def write(out: Location, manifest: dict) -> None:
    manifest = {**manifest, "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    storage.write_text(out, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def differences(previous: dict, current: dict) -> list[str]:
    """The settings whose values differ between two compat records, sorted."""
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def prepare(out: Location, compat: dict, overwrite: bool) -> None:
    """Make OUT ready for a job with settings `compat`: new, resumable, or cleared by --overwrite."""
    previous = read(out)
    if overwrite:
        for name in (features.FEATURES_DIR, features.ERRORS_DIR, storage.TMP_DIR, MANIFEST):
            out.join(name).delete()
        return
    has_data = any(out.join(d).exists() for d in (features.FEATURES_DIR, features.ERRORS_DIR))
    if previous is None and has_data:
        raise CatdogError(f"{out} holds features but no {MANIFEST}; use --overwrite or another --out")
    if previous is not None and previous.get("compat") != compat:
        raise CatdogError(
            f"{out} was made with other settings ({', '.join(differences(previous.get('compat', {}), compat))} differ); "
            "use --overwrite to replace it, or another --out"
        )
    clear_tmp(out)  # leftovers of an interrupted run


def clear_tmp(out: Location) -> None:
    out.join(storage.TMP_DIR).delete()


@contextmanager
def locked(out: Location) -> Iterator[None]:
    """One job per OUT at a time. Local folders only: object stores have no exclusive create."""
    if not out.is_local:
        yield
        return
    try:
        os.makedirs(out.path, exist_ok=True)
    except OSError as exc:
        raise CatdogError(f"cannot create output folder {out}: {exc.strerror}") from None
    path = os.path.join(out.path, LOCK)
    _take(path, out)
    try:
        yield
    finally:
        os.unlink(path)


def _take(path: str, out: str) -> None:
    owner = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(path):
                raise CatdogError(f"another catdog job is writing to {out} (lock {path})") from None
            os.unlink(path)  # its owner died without cleaning up
            continue
        except OSError as exc:
            raise CatdogError(f"cannot write to output folder {out}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as f:
            f.write(owner)
        return
    raise CatdogError(f"cannot take the lock {path}")


def _stale(path: str) -> bool:
    try:
        host, pid = open(path).read().split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
