"""Work one step ahead on a second thread, so that one worker process keeps two cores busy.

The job's heavy steps release the GIL: pyarrow parsing and writing, file reads, the module's
TensorFlow calls. Reading the next table while this one is embedded, and writing the last one
while the next is embedded, overlaps them on Beam's in-process runner, with a bounded number of
tables held (``depth``) and the results in the same order as without the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced on a background thread at most ``depth`` ahead of the
    consumer. An exception in ``items`` is raised here, where the item would have come; closing
    this generator early stops the thread (it is joined before close returns)."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(value, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer's thread
            put(_Failed(e))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="beam-hub-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value = ready.get()
            if value is _DONE:
                return
            if isinstance(value, _Failed):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join()


class WriteBehind:
    """Calls ``write(value)`` for each value on a background thread, at most ``depth`` values
    behind. An error in ``write`` is raised by the next :meth:`put` or by :meth:`close`, which
    waits until everything is written."""

    def __init__(self, write: Callable[[Any], None], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="beam-hub-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            value = self._queue.get()
            if value is _DONE:
                return
            if self._error is None:
                try:
                    self._write(value)
                except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                    self._error = e

    def put(self, value: Any) -> None:
        """Queue ``value`` for writing (blocks while ``depth`` values wait)."""
        self._raise()
        self._queue.put(value)

    def close(self) -> None:
        """Write what is queued, stop the thread; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
