"""Download progress: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

from fsspec.callbacks import Callback

from beam_hub import settings

log = logging.getLogger("beam_hub.download")


class LogCallback(Callback):
    """fsspec callback that logs progress every ``every_s`` seconds and at the end."""

    def __init__(self, what: str, every_s: float = 10.0) -> None:
        super().__init__()
        self.what = what
        self.every_s = every_s
        self._start = self._last = time.monotonic()

    def call(self, *args, **kwargs) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            total = f" of {self.size / 1e6:.1f} MB" if self.size else ""
            log.info(
                "Downloading %s: %.1f MB%s (%.0fs)", self.what, self.value / 1e6, total, now - self._start
            )

    def close(self) -> None:
        log.info(
            "Downloaded %s: %.1f MB in %.1fs", self.what, self.value / 1e6, time.monotonic() - self._start
        )


def download_callback(what: str) -> Callback:
    """A tqdm bar when stderr is a terminal (or BEAM_HUB_PROGRESS=1), else log lines."""
    mode = settings.progress_mode()
    if mode is None:
        mode = sys.stderr.isatty()
    if mode:
        from fsspec.callbacks import TqdmCallback

        return TqdmCallback(
            tqdm_kwargs={"desc": what, "unit": "B", "unit_scale": True, "unit_divisor": 1024, "leave": False}
        )
    return LogCallback(what)
