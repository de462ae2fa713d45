"""The terminal's share of the command line: Ctrl-C and SIGTERM stop a command the same way, and
without --verbose, Python's sys.stderr drops the lines that are information only. File descriptor 2
itself is never touched, so whatever native code writes there (a fatal error, a crash) is seen.
"""

from __future__ import annotations

import io
import re
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

# Lines that are information only, as Ray forwards them from its workers to the driver's sys.stderr
# ("(Embedder pid=7) " in front): abseil's INFO-severity lines ("I0000 00:00:1796.1 4242 port.cc:153] ..."),
# which TensorFlow writes before abseil's logging is initialised and TF_CPP_MIN_LOG_LEVEL cannot stop;
# abseil's banner that says so; and TensorFlow's report that CUDA found no driver on a machine without
# a GPU (an actor that Ray gave a GPU TensorFlow cannot see stops with its own error). Every other
# line, WARNING, ERROR and FATAL ones included, passes.
_RAY_PREFIX = r"(?:(?:\x1b\[[0-9;]*m)?\([^)]*\)(?:\x1b\[0m)? )?"
_ABSL = r"\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.-]+:\d+\] "
INFO_LINE = re.compile(_RAY_PREFIX + r"(?:I" + _ABSL + r"|E" + _ABSL + r"failed call to cuInit: |"
                       r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")


class _InfoFilter(io.TextIOBase):
    """sys.stderr without INFO_LINE lines; any other text, partial lines included, goes through at once."""

    def __init__(self, target) -> None:
        self.target = target
        self._dropped = False  # print() writes a line, then its "\n"

    def write(self, text: str) -> int:
        dropped, self._dropped = self._dropped, False
        if text == "\n" and dropped:
            return len(text)
        kept = [line for line in text.splitlines(keepends=True) if not INFO_LINE.match(line)]
        if len(kept) < len(text.splitlines(keepends=True)):
            self._dropped = not text.endswith("\n")
        return self.target.write("".join(kept)) if kept else len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self):
        return self.target.encoding


@contextmanager
def info_lines_dropped(enabled: bool = True) -> Iterator[None]:
    """Python's sys.stderr without INFO_LINE lines for the block."""
    if not enabled:
        yield
        return
    original = sys.stderr
    sys.stderr = _InfoFilter(original)
    try:
        yield
    finally:
        sys.stderr = original


class Terminated(BaseException):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt: every `finally` on
    the way out runs (Ray's actors stopped, OUT's lock released). A BaseException, as KeyboardInterrupt
    is, so that no `except Exception` on the way swallows it."""


def _stop(signum: int, frame) -> None:
    # The first signal stops the command; more of them (a second Ctrl-C, a SIGTERM after it) would
    # only cut the clean-up short, so they are ignored until the command has returned.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """For the block, SIGINT raises KeyboardInterrupt and SIGTERM `Terminated`, once (see `_stop`).
    `catdog.cluster.ray_session` puts this handler back after Ray, which installs its own, starts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
