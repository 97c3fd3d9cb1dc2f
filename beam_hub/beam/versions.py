"""Where an ApplyHubModule DoFn's module comes from, and how a batch is computed with it:

pinned            one version, loaded once per process (Beam's Shared) or per machine
                  (``large_model``: multi_process_shared, calls proxied)
followed          ``follow=True``: a :class:`beam_hub.follow.Follower` per process swaps in new
                  versions of a moving name between batches
followed, shared  ``follow=True, large_model=True``: the follower lives in the machine's model
                  process with its module; each batch is one proxied call returning the
                  outputs and the version that computed them
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from beam_hub.batch import ApplySpec
from beam_hub.beam.handler import HubModelHandler
from beam_hub.beam.metrics import InferenceMetrics
from beam_hub.beam.shared_model import acquire, acquire_follower
from beam_hub.follow import Follower, output_structure, signature_structure


class ModuleSource:
    """``run(batch)`` -> (version, outputs), computed by ``compute(module, batch)`` (given to
    ``open``) with the module of the version in use."""

    def __init__(self, handler: HubModelHandler, poll_seconds: float | None) -> None:
        self._handler = handler
        self._poll_seconds = poll_seconds
        self._follower: Any = None
        self._module: Any = None
        self._compute: Callable[[Any, Any], Any] | None = None

    @property
    def following(self) -> bool:
        return self._poll_seconds is not None

    def open(
        self,
        metrics: InferenceMetrics,
        how: str,
        compute: Callable[[Any, Any], Any],
    ) -> None:
        """Load (or find) this process's module or follower. ``how`` names the way of computing
        (followers are shared by DoFns that compute alike)."""
        self._compute = compute
        key = self._handler.module_key
        per_machine = self._handler.share_model_across_processes()
        if not self.following:
            acquired = acquire(key, per_machine=per_machine)
            self._module = acquired.module
            metrics.loaded(acquired.load_msecs)
            return
        poll = self._poll_seconds or 60.0
        made: list[float] = []

        def load(concrete: str) -> Any:
            return dataclasses.replace(key, handle=concrete).load()

        def make() -> Follower:
            start = time.perf_counter()
            follower = follower_of(key.handle, load, self._handler.apply_spec, compute, poll_seconds=poll)
            made.append((time.perf_counter() - start) * 1000.0)
            return follower

        self._follower = acquire_follower(key, poll, how, make, per_machine=per_machine)
        metrics.loaded(made[0] if made else None)

    def run(self, batch: Any) -> tuple[str, Any]:
        """The version in use and its outputs for ``batch``."""
        if self._follower is None:
            assert self._compute is not None
            return self._handler.handle, self._compute(self._module, batch)
        return self._follower.compute(batch)

    def spec(self) -> Any:
        """The signature of the version in use (for messages)."""
        if self._follower is None:
            return self._module.spec(self._handler.apply_spec)
        return self._follower.spec(self._handler.apply_spec)

    def report(self, metrics: InferenceMetrics, version: str, n: int) -> None:
        """After a batch: the versions' metrics (elements per version, swaps, rejections)."""
        if self._follower is not None:
            metrics.followed(version, n, self._follower.events())


def follower_of(
    handle: str,
    load: Callable[[str], Any],
    apply: ApplySpec,
    compute: Callable[[Any, Any], Any],
    *,
    poll_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Follower:
    """A :class:`~beam_hub.follow.Follower` of ``handle`` for modules applied by
    ``compute(module, batch)`` with ``apply``: the name resolved as every handle is
    (``resolve_version``), a new version checked by its signature and by its outputs' structure."""
    from beam_hub.resolvers import resolve_version

    return Follower(
        handle,
        load,
        poll_seconds=poll_seconds,
        resolve=resolve_version,
        probe=compute,
        structure=output_structure,
        signature=lambda module: signature_structure(module.spec(apply)),
        clock=clock,
    )
