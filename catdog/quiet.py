"""A quiet command by default: the progress bar, the user's warnings and the summary, not the
libraries' start-up chatter. `catdog --verbose` (CATDOG_VERBOSE=1, inherited by Ray's workers)
shows everything.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

VERBOSE_ENV = "CATDOG_VERBOSE"
# Lines that reach the driver's file descriptor 2 from native code (all are also in the Ray session's
# logs): Ray's C++ core worker prints the first for every pool of restartable actors whose code or
# arguments travel through the object store (ray-project/ray#53727); abseil's mutex tracing (the second) is
# forwarded now and then from a starting worker.
_DROPPED_NATIVE = (b"has constructor arguments in the object store and max_restarts > 0", b"[mutex.cc : ")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if on else "0"


class _Stderr:
    """Who file descriptor 2 points at. Two redirections can be active at once from different threads
    (TensorFlow imported in the weights thread while Ray runs under the line filter), so each one only
    changes a count or a flag, under a lock, and fd 2 is pointed at what they add up to: /dev/null
    while anything is silenced, else the filter's pipe while it runs, else the real stderr."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.silenced = 0
        self.pipe: int | None = None  # the filter's write end
        self.real: int | None = None  # a copy of the real stderr, taken before any redirection
        self.devnull: int | None = None

    def change(self, silenced: int = 0, pipe: int | None | bool = False) -> int:
        """Apply a change; returns the real stderr's descriptor."""
        with self.lock:
            if self.real is None:
                self.real, self.devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            self.silenced += silenced
            if pipe is not False:
                self.pipe = pipe
            sys.stderr.flush()
            os.dup2(self.devnull if self.silenced else self.pipe if self.pipe is not None else self.real, 2)
            return self.real


_stderr = _Stderr()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: TensorFlow's C++ start-up lines (absl's
    'All log messages before absl::InitializeLog()', 'Could not find cuda drivers', 'failed call to
    cuInit') are written there by native code, below Python's sys.stderr and TF_CPP_MIN_LOG_LEVEL."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "2")
    if verbose():
        yield
        return
    _stderr.change(silenced=1)
    try:
        yield
    finally:
        _stderr.change(silenced=-1)


def load_tensorflow() -> None:
    """Import TensorFlow and Keras, and let TensorFlow meet the devices, with the native chatter
    silenced; call before any `import keras` or `import tensorflow` (cheap once done)."""
    global _loaded
    if _loaded:
        return
    with native_stderr_silenced(), _not_importable(KERAS_EXTRAS):
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # where cuInit complains on a machine without a GPU
    _loaded = True


_loaded = False
# Keras imports these at its own start-up when they are installed, for its plotting helpers and its
# scikit-learn wrappers, neither of which catdog uses: 2.5 of the 8 s every embedding actor spent
# loading TensorFlow and Keras (2 cores). catdog's own uses import them directly, later, as usual.
# Meanwhile no other thread may import them: the extract driver's main thread, starting Ray while
# the weights thread loads Keras, imports neither.
KERAS_EXTRAS = ("matplotlib", "sklearn")


@contextmanager
def _not_importable(names: tuple[str, ...]) -> Iterator[None]:
    """For the block, `import name` raises ImportError (a None entry in sys.modules) for those of
    `names` not imported yet; afterwards they import normally."""
    blocked = [n for n in names if n not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


@contextmanager
def ray_native_lines_dropped() -> Iterator[None]:
    """Pass file descriptor 2 through a pipe for the block, forwarding everything but the lines of
    `_DROPPED_NATIVE`; partial lines (a progress bar's carriage returns) go through at once."""
    if verbose():
        yield
        return
    read_end, write_end = os.pipe()
    real = _stderr.change(pipe=write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, real), name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        _stderr.change(pipe=None)
        os.close(write_end)  # the pipe's last writer gone: the forwarder reads to the end and stops
        forwarder.join(timeout=5)


def _forward(read_end: int, out: int) -> None:
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line + b"\n" for line in lines if not any(d in line for d in _DROPPED_NATIVE)]
            if pending and not pending.startswith(b"["):  # not the start of a Ray log line: show it now
                kept.append(pending)
                pending = b""
            if kept:
                os.write(out, b"".join(kept))
    if pending:
        os.write(out, pending)


def ray_log_level() -> int:
    return logging.INFO if verbose() else logging.ERROR
