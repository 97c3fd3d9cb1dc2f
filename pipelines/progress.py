"""The embedding job's progress, where the user runs it.

On a terminal: one tqdm line updated in place (records done, embedded or set aside, out of the
records the input is expected to hold; records/s, ETA, rejected so far). Elsewhere: a log line every 10 s. Only Beam's
in-process runner runs the job's steps in this process; on other runners (Dataflow, the
multi-process local mode) nothing reaches this object and the runner shows its own progress.

The input's size is known in bytes, its rows are not: the readers say how many bytes they have
read and how many rows those held, and the rows expected are the input's bytes at that ratio
(exact once everything is read). Rows/s counts from the moment the first input was opened, so
the pipeline's own start-up does not dilute it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from beam_hub import settings

log = logging.getLogger("beam_hub.embed")


class JobProgress:
    """Counts fed by the job's steps; rendered as a tqdm line or periodic log lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = False
        self._bar: Any = None
        self._total_bytes = self._bytes_read = self._rows_read = self._rows = self._rejected = 0

    def start(self, total_bytes: int, *, bar: bool | None = None, every_s: float = 10.0) -> None:
        """Begin showing progress for an input of ``total_bytes``; ``bar`` None: a tqdm line when
        stderr is a terminal (BEAM_HUB_PROGRESS=1/0 forces it on/off), else log lines every ``every_s``."""
        if bar is None:
            mode = settings.progress_mode()
            bar = sys.stderr.isatty() if mode is None else mode
        with self._lock:
            self.active = True
            self._total_bytes = max(total_bytes, 0)
            self._bytes_read = self._rows_read = self._rows = self._rejected = 0
            self._first: float | None = None  # when the first input was opened
            self._last = time.monotonic()
            self._every_s = every_s
            self._bar = None
            if bar:
                from tqdm import tqdm

                self._bar = tqdm(total=None, unit=" rows", desc="embedding", leave=False, dynamic_ncols=True)

    def began(self) -> None:
        """The job's first input is being read: rates count from now (not from pipeline start)."""
        if self.active and self._first is None:
            with self._lock:
                if self._first is None:
                    self._first = time.monotonic()

    def read(self, nbytes: int, rows: int) -> None:
        """``nbytes`` more of the input were read, holding ``rows`` rows."""
        if self.active and (nbytes > 0 or rows > 0):
            with self._lock:
                self._bytes_read += max(nbytes, 0)
                self._rows_read += max(rows, 0)
                self._show()

    def rows(self, n: int = 1) -> None:
        """``n`` more rows were embedded and written."""
        self._done(n, rejected=False)

    def rejected(self, n: int = 1) -> None:
        """``n`` more records were set aside (dead letters)."""
        self._done(n, rejected=True)

    def _done(self, n: int, *, rejected: bool) -> None:
        if self.active:
            with self._lock:
                if rejected:
                    self._rejected += n
                else:
                    self._rows += n
                if self._bar is not None:
                    self._bar.update(n)  # the line counts records done, embedded or set aside
                self._show()

    def close(self) -> None:
        """Stop showing progress (a terminal's line shows the final counts, then is cleared)."""
        with self._lock:
            if self._bar is not None:
                self._bar.total = max(self.expected_rows() or 0, self._rows + self._rejected)
                self._bar.set_postfix_str(f"{self._rejected:,} rejected", refresh=True)
                self._bar.close()
                self._bar = None
            self.active = False

    def expected_rows(self) -> int | None:
        """The rows the whole input is expected to hold (None before anything was read)."""
        if not self._bytes_read:
            return None
        if self._bytes_read >= self._total_bytes:
            return self._rows_read
        return round(self._total_bytes * self._rows_read / self._bytes_read)

    def _rate(self, now: float) -> float:
        since = self._first if self._first is not None else now
        return self._rows / (now - since) if now - since > 1e-3 else 0.0

    def _show(self) -> None:
        now = time.monotonic()
        expected = self.expected_rows()
        if self._bar is not None:
            if now - self._last >= 0.5:
                self._last = now
                if expected is not None and expected != self._bar.total:
                    self._bar.total = max(expected, self._rows + self._rejected)
                self._bar.set_postfix_str(f"{self._rejected:,} rejected", refresh=True)
            return
        if now - self._last < self._every_s:
            return
        self._last = now
        where = ""
        done = self._rows + self._rejected
        if expected:
            where = f", about {min(done / expected, 1.0):.0%} of the input"
            rate = self._rate(now)
            if rate > 0 and expected > done:
                where += f", about {_duration((expected - done) / rate)} left"
        log.info(
            "embedded %s rows (%s rows/s)%s; %s rejected",
            f"{self._rows:,}",
            f"{self._rate(now):,.0f}",
            where,
            f"{self._rejected:,}",
        )


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


#: The one progress of this process (the in-process runner's steps feed it).
PROGRESS = JobProgress()


def note_rows(n: int = 1) -> None:
    """For the job's steps (pickled by reference: the object itself holds a lock)."""
    PROGRESS.rows(n)


def note_rejected(n: int = 1) -> None:
    """For the job's steps: ``n`` records set aside."""
    PROGRESS.rejected(n)
