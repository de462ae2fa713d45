"""Shards handed to the pipeline while the listing that cuts them is still going: a thread runs the
plan (listing, comparison with OUT's index, cutting) into a bounded queue, and the pipeline takes
shards from it as its actors free up. The queue's bound is the driver's window: the listing runs
ahead of the work by at most `AHEAD` shards, so memory does not grow with the size of ROOT."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, TypeVar

T = TypeVar("T")
AHEAD = 64  # shards cut and waiting for an actor
_END = object()


class Feed:
    """Items of an iterable produced in a thread, taken without blocking (`poll`) or with (`wait`).
    An exception of the producer is raised to the taker; `close` stops the producer."""

    def __init__(self, items: Iterable[T], ahead: int = AHEAD) -> None:
        self.queue: queue.Queue = queue.Queue(ahead)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.finished = False  # every item taken
        self.held: list = []  # taken by `first` and handed out again
        self.thread = threading.Thread(target=self._produce, args=(items,), name="catdog-listing", daemon=True)
        self.thread.start()

    def _produce(self, items: Iterable[T]) -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the taker, which raises it in the job's thread
            self.error = exc
        finally:
            getattr(iterator, "close", lambda: None)()  # a generator's clean-up (the listing's threads) runs here
        self._put(_END)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def first(self, timeout: float = 0.5) -> bool:
        """Wait until there is an item or none will come; True if there is (it stays the next)."""
        while not self.held and not self.finished:
            item = self.poll(timeout)
            if item is not None:
                self.held.append(item)
        return bool(self.held)

    def next(self, timeout: float = 0.5) -> T | None:
        """The next item, waiting for the producer; None once every item was taken."""
        while True:
            item = self.poll(timeout)
            if item is not None or self.finished:
                return item

    def poll(self, timeout: float = 0.0) -> T | None:
        """The next item, or None if there is none yet (or none left: see `finished`)."""
        if self.held:
            return self.held.pop()
        if self.finished:
            return None
        try:
            item = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            self.finished = True
            if self.error is not None:
                raise self.error
            return None
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join()

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
