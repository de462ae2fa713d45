"""One job per OUT at a time: an exclusively created file on a filesystem, a lock object with a
heartbeat on an object store."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from catdog.errors import CatdogError
from catdog.storage import Location, store_error
from catdog.store.layout import LOCK

HEARTBEAT_S = 10.0  # how often a job on an object store renews its lock object
STALE_S = 120.0  # a lock object not renewed for this long belonged to a job that died
SETTLE_S = 1.0  # two jobs that write the lock at once: the later PUT wins, the other sees it and stops


@contextmanager
def locked(out: Location) -> Iterator[None]:
    """Hold OUT's lock for the block, or stop with a one-line error naming the job that holds it."""
    if not out.is_local:
        with _lock_object(out):
            yield
        return
    try:
        os.makedirs(out.path, exist_ok=True)
    except OSError as exc:
        raise CatdogError(f"cannot create output folder {out}: {exc.strerror}") from None
    path = os.path.join(out.path, LOCK)
    owner = _take(path, out)
    try:
        yield
    finally:
        _release(path, owner)


def _take(path: str, out: str) -> str:
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
        return owner
    raise CatdogError(f"cannot take the lock {path}")


def _release(path: str, owner: str) -> None:
    """Remove the lock if it is still ours: someone may have deleted it during the run (an `rm -rf`
    of OUT) and another job taken it since; that job's lock stays, and a lock already gone is no error."""
    try:
        with open(path) as f:
            if f.read() != owner:
                return
        os.unlink(path)
    except FileNotFoundError:
        pass


def _stale(path: str) -> bool:
    try:
        host, pid = open(path).read().split()
    except (OSError, ValueError):
        return False
    return _dead_here(host, int(pid))


def _dead_here(host: str, pid: int) -> bool:
    """The lock's owner ran on this machine and is gone."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def _lock_object(out: Location) -> Iterator[None]:
    """OUT/.catdog.lock holds owner, host, pid and a heartbeat time, renewed while the job runs.

    Object stores offer no exclusive create through pyarrow, so this is a best effort: a job
    refuses a lock renewed less than STALE_S ago (unless its owner ran on this machine and is gone), writes its own, waits SETTLE_S and checks it is
    still its own. Two jobs starting within the same request latency could both pass; a job whose
    machine stalls for longer than STALE_S may have its lock taken over.
    """
    lock = out.join(LOCK)
    held = _read_lock(lock)
    if held and time.time() - held.get("heartbeat", 0) < STALE_S and not _dead_here(held.get("host"), held.get("pid", 0)):
        raise CatdogError(f"another catdog job is writing to {out} (lock {lock}: {held.get('host')} pid {held.get('pid')}, "
                          f"renewed {time.time() - held['heartbeat']:.0f} s ago; taken over once {STALE_S:.0f} s old)")
    mine = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        _renew(lock, mine)
    except OSError as exc:  # the store refuses writes: nothing else would be written either
        raise CatdogError(f"cannot write the lock {lock}: {store_error(exc)}") from None
    time.sleep(SETTLE_S)
    if (_read_lock(lock) or {}).get("owner") != mine["owner"]:
        raise CatdogError(f"another catdog job is writing to {out} (it took the lock {lock} at the same time)")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lock, mine, stop), daemon=True, name="catdog-lock")
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        if (_read_lock(lock) or {}).get("owner") == mine["owner"]:
            lock.delete()


def _read_lock(lock: Location) -> dict | None:
    try:
        return json.loads(lock.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:  # unreadable: treat as an old lock
        return {"heartbeat": 0}


def _renew(lock: Location, mine: dict) -> None:
    with lock.fs.open_output_stream(lock.path) as stream:
        stream.write(json.dumps({**mine, "heartbeat": time.time()}).encode())


def _heartbeat(lock: Location, mine: dict, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            _renew(lock, mine)
        except OSError:
            pass  # a missed beat is retried at the next one; STALE_S allows for many
