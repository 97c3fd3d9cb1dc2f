"""Where an ApplyHubModule DoFn's module comes from: pinned (one version, loaded once per process)
or followed (``follow=True``: a :class:`beam_hub.follow.Follower` per process swaps in new
versions of a moving name between batches)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from beam_hub.beam.handler import HubModelHandler
from beam_hub.beam.metrics import InferenceMetrics
from beam_hub.beam.shared_model import acquire, acquire_follower


class ModuleSource:
    """``current()`` -> (version, module) for each batch; ``computed(...)`` after it."""

    def __init__(self, handler: HubModelHandler, poll_seconds: float | None) -> None:
        self._handler = handler
        self._poll_seconds = poll_seconds
        self._follower: Any = None
        self._module: Any = None

    @property
    def following(self) -> bool:
        return self._poll_seconds is not None

    def open(
        self,
        metrics: InferenceMetrics,
        how: str,
        probe: Callable[[Any, Any], Any],
        structure: Callable[[Any], Any],
    ) -> None:
        """Load (or find) this process's module or follower; ``probe(module, batch)`` computes a
        batch's outputs the way the DoFn does, ``structure(outputs)`` what must not change."""
        key = self._handler.module_key
        if not self.following:
            acquired = acquire(key, per_machine=self._handler.share_model_across_processes())
            self._module = acquired.module
            metrics.loaded(acquired.load_msecs)
            return
        from beam_hub.aliases import resolve_version
        from beam_hub.follow import Follower, signature_structure

        spec = self._handler.apply_spec
        made: list[float] = []

        def load(concrete: str) -> Any:
            return dataclasses.replace(key, handle=concrete).load()

        def make() -> Follower:
            start = time.perf_counter()
            follower = Follower(
                key.handle,
                load,
                poll_seconds=self._poll_seconds or 60.0,
                resolve=resolve_version,
                probe=probe,
                structure=structure,
                signature=lambda module: signature_structure(module.spec(spec)),
            )
            made.append((time.perf_counter() - start) * 1000.0)
            return follower

        self._follower = acquire_follower(key, self._poll_seconds or 60.0, how, make)
        metrics.loaded(made[0] if made else None)

    def current(self) -> tuple[str, Any]:
        if self._follower is None:
            return self._handler.handle, self._module
        return self._follower.current()

    def computed(self, version: str, batch: Any, outputs: Any, metrics: InferenceMetrics, n: int) -> None:
        """After a batch: note it for the next version's check, and report versions' metrics."""
        if self._follower is None:
            return
        self._follower.computed(version, batch, outputs)
        metrics.followed(version, n, self._follower.events())
