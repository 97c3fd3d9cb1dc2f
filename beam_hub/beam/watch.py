"""WatchVersions: a moving name's versions as RunInference model updates.

    updates = p | beam_hub.WatchVersions("gs://b/models/fruit@champion", poll_seconds=60)
    pcoll | RunInference(HubModelHandler("gs://b/models/fruit@champion"), model_metadata_pcoll=updates)

Unlike Beam's WatchFilePattern, it follows the name's own answer (the highest whole version for
``@latest``, the alias's version for ``@NAME``; never a file time), emits the version the name
points at when the job starts, and works on directories (SavedModels) as well as archives.
RunInference loads what it is given, without the checks of ``ApplyHubModule(follow=True)``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelMetadata
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

log = logging.getLogger(__name__)


class WatchVersions(beam.PTransform):
    """A root transform: ``ModelMetadata(model_id=<concrete handle>, model_name=<handle>)`` once at
    start and again each time ``handle`` (``DEST@latest``, ``DEST@NAME``, a Hugging Face branch,
    a served ``MODEL@latest``) moves, asked every ``poll_seconds``; in the global window with a
    processing-time trigger, ready for ``RunInference(..., model_metadata_pcoll=...)``.
    ``stop_timestamp`` (seconds since the epoch) ends the watch (for bounded tests)."""

    def __init__(
        self, handle: str | os.PathLike, poll_seconds: float = 60.0, *, stop_timestamp: float | None = None
    ) -> None:
        super().__init__()
        if not poll_seconds > 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        self._handle = os.fspath(handle)
        self._poll_seconds = poll_seconds
        self._stop = MAX_TIMESTAMP if stop_timestamp is None else Timestamp.of(stop_timestamp)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Tick"
            >> PeriodicImpulse(
                start_timestamp=Timestamp.of(time.time()),
                stop_timestamp=self._stop,
                fire_interval=self._poll_seconds,
            )
            | "WhenMoved" >> beam.ParDo(_WhenMoved(self._handle))
            | "GlobalWindow"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )


_emitted: dict[str, str] = {}  # watch id -> the version it last emitted, in this process
_emitted_lock = threading.Lock()


class _WhenMoved(beam.DoFn):
    """Emits the concrete version when it differs from the last one this watch emitted in this
    process (runners make a new DoFn instance per bundle, so the memory is the process's, keyed by
    the watch; no state API, so it runs on the local runners; a runner that moves the impulse to
    another worker repeats the current version once, which RunInference takes as no change)."""

    def __init__(self, handle: str) -> None:
        self._handle = handle
        self._id = uuid.uuid4().hex  # one per WatchVersions: two pipelines never share a memory

    def process(self, _tick: Any):
        from beam_hub.resolvers import resolve_version

        try:
            concrete = resolve_version(self._handle)
        except Exception as e:  # noqa: BLE001 - a failed poll keeps the current version
            log.warning("%s: could not ask where it points now (%s)", self._handle, e)
            return
        with _emitted_lock:
            moved = _emitted.get(self._id) != concrete
            _emitted[self._id] = concrete
        if moved:
            log.info("%s is %s", self._handle, concrete)
            yield ModelMetadata(model_id=concrete, model_name=self._handle)
