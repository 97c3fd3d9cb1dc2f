"""The transforms' metrics (namespace ``beam_hub``) and a worker's progress log, in one object.

Counters ``module_loads``, ``inference_elements``, ``inference_batches``; distributions
``batch_size``, ``inference_msecs``, ``load_msecs``. Following a moving name (``follow=True``):
counters ``version_swaps``, ``version_rejected`` and ``inference_elements@VERSION`` (elements
each concrete version computed), gauge ``version_in_use`` (the version's number, when it is one). A load happens in ``setup()``, where Beam
drops metric updates, so it is counted on the next ``process()`` (as Beam's own RunInference does).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from apache_beam.metrics import Metrics

METRICS_NAMESPACE = "beam_hub"
log = logging.getLogger("beam_hub.beam")


class InferenceMetrics:
    def __init__(self, handle: str, *, progress_every_s: float = 10.0) -> None:
        ns = METRICS_NAMESPACE
        self._loads = Metrics.counter(ns, "module_loads")
        self._load_msecs = Metrics.distribution(ns, "load_msecs")
        self._elements = Metrics.counter(ns, "inference_elements")
        self._batches = Metrics.counter(ns, "inference_batches")
        self._batch_size = Metrics.distribution(ns, "batch_size")
        self._inference_msecs = Metrics.distribution(ns, "inference_msecs")
        self._pending_load_msecs: float | None = None
        self._swaps = Metrics.counter(ns, "version_swaps")
        self._rejected = Metrics.counter(ns, "version_rejected")
        self._in_use = Metrics.gauge(ns, "version_in_use")
        self._handle = handle
        self._every_s = progress_every_s
        self._count = 0
        self._start = self._last = time.monotonic()

    def loaded(self, msecs: float | None) -> None:
        """Note a load made in setup() (None: no load in this process); reported by ``flush_load``."""
        self._pending_load_msecs = msecs

    def flush_load(self) -> None:
        """Report the noted load; call first thing in process()."""
        if self._pending_load_msecs is not None:
            self._loads.inc()
            self._load_msecs.update(int(self._pending_load_msecs))
            self._pending_load_msecs = None

    def inferred(self, elements: int, *, calls: int = 1, msecs: float | None = None) -> None:
        """Count ``elements`` applied in one batch (``calls`` signature calls taking ``msecs``)."""
        if msecs is not None:
            self._inference_msecs.update(int(msecs))
            self._batches.inc(calls)
            self._batch_size.update(elements)
        self._elements.inc(elements)
        self._count += elements
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            log.info(
                "%s: %d elements in %.0fs (%.0f/s) in this worker",
                self._handle,
                self._count,
                now - self._start,
                self._count / (now - self._start),
            )

    def followed(self, version: str, elements: int, events: Sequence[Any]) -> None:
        """Count ``elements`` computed by ``version`` and the follower's swaps and rejections."""
        Metrics.counter(METRICS_NAMESPACE, f"inference_elements@{version}").inc(elements)
        number = _VERSION_NUMBER.search(version)
        if number:
            self._in_use.set(int(number.group(1)))
        for event in events:
            (self._swaps if event.kind == "swap" else self._rejected).inc()


_VERSION_NUMBER = re.compile(r"/(\d+)(?:\.tar\.gz)?/?$")  # DEST/7.tar.gz, DEST/7, a served /acme/m/7
