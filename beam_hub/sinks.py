"""Where downloaded bytes go: a local file, or straight into safe extraction on a second thread.

A sink receives one download attempt: ``write`` for each chunk, then ``finish`` when the body
arrived whole or ``abort`` when the attempt failed. Extraction overlaps the network transfer, and
the archive is never written to disk whole (so a module needs its own size on disk, not twice it).
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Protocol, cast

from beam_hub.archive import ExtractedFiles, safe_extract

_QUEUE_CHUNKS = 32  # backpressure: at most this many chunks (~1 MiB each) in flight
_EOF = object()
_ABORT = object()


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class SinkFailed(Exception):
    """Raised from ``write`` to stop a download because the sink cannot go on; ``error`` says why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _QueueReader(io.RawIOBase):
    def __init__(self, chunks: queue.Queue[object]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._buf:
            if self._done:
                return 0
            item = self._chunks.get()
            if item is _EOF:
                self._done = True
                return 0
            if item is _ABORT:
                self._done = True
                raise _Aborted()
            self._buf = memoryview(cast(bytes, item))  # a chunk: the sentinels are handled above
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        """Discard everything until the producer says it is done, so it never blocks on us."""
        self._buf = memoryview(b"")
        while not self._done:
            if self._chunks.get() in (_EOF, _ABORT):
                self._done = True


class _Aborted(Exception):
    pass


class ExtractingSink:
    """Extract the archive as it arrives (safe_extract on a worker thread) into ``dest``."""

    def __init__(self, dest: str, *, what: str) -> None:
        self.dest = dest
        self.what = what
        self.result: ExtractedFiles | None = None
        self.error: BaseException | None = None
        self._chunks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._reader = _QueueReader(self._chunks)
        self._thread = threading.Thread(target=self._run, name="beam-hub-extract", daemon=True)
        self._thread.start()

    @property
    def extracted(self) -> ExtractedFiles:
        """What the extraction wrote, once the download into this sink finished."""
        if self.result is None:
            raise RuntimeError(f"{self.what}: the archive was not extracted (the download did not finish)")
        return self.result

    def _run(self) -> None:
        try:
            self.result = safe_extract(self._reader, self.dest, what=self.what)
        except _Aborted:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the producer
            self.error = e
        finally:
            self._reader.drain()

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise SinkFailed(self.error)
        if data:
            self._chunks.put(bytes(data))
        return len(data)

    def finish(self) -> None:
        self._chunks.put(_EOF)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self._chunks.put(_ABORT)
        self._thread.join()
