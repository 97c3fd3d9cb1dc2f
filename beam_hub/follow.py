"""Following a moving name: poll where it points, check a new version, adopt it, release the old.

A :class:`Follower` serves one moving handle (``DEST@latest``, ``DEST@NAME``, a Hugging Face
branch, a `beam-hub serve` model URL with ``@latest``) in one process, for every batch::

    version, module = follower.current()     # the version for this batch (a poll starts when due)
    outputs = module.apply_batch(batch, spec)
    follower.computed(version, batch, outputs)  # what the next version is checked against

Every ``poll_seconds`` one background thread asks where the name points now (one listing or
request; nothing is downloaded unless the answer changed). A new version is resolved into the
cache (shared tier included) with its integrity checks, passes the audit policy, loads, and is
checked: its signature has the same inputs and outputs (names, dtypes, shapes past the batch
dimension) and, called on the last batch the current version computed, returns outputs of the
same structure. Only then is it used, from the next batch on; the old module is dropped (and
garbage-collected once no batch in flight holds it). A version that fails any step is rejected
once, with a warning naming it and why, and never tried again; the current version stays and a
later version is tried when the name moves on. Nothing here imports Beam: the transforms hold
one follower per worker process (:mod:`beam_hub.beam.apply`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A change a follower made: ``kind`` "swap" (to ``version``) or "rejected" (``version``, ``why``)."""

    kind: str
    version: str
    why: str = ""


class Follower:
    """One moving handle, followed in this process (see the module docstring).

    ``load(concrete_handle)`` returns a loaded module (resolved, audited, loaded), ``resolve(handle)``
    the concrete handle the name points at now, ``probe(module, batch)`` the module's outputs for
    a batch, ``structure(outputs)`` what must not change between versions. The first version is
    resolved and loaded here: the job cannot start without one (its error is the caller's).
    """

    def __init__(
        self,
        handle: str,
        load: Callable[[str], Any],
        *,
        poll_seconds: float,
        resolve: Callable[[str], str],
        probe: Callable[[Any, Any], Any],
        structure: Callable[[Any], Any],
        signature: Callable[[Any], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        self.handle = handle
        self._load, self._resolve = load, resolve
        self._probe, self._structure, self._signature = probe, structure, signature
        self._poll_seconds, self._clock = poll_seconds, clock
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._rejected: dict[str, str] = {}
        self._polling: threading.Thread | None = None
        self._last: tuple[Any, Any] | None = None  # (batch, structure of its outputs) of the current version
        self.version = resolve(handle)
        self._module = load(self.version)
        self._next_poll = clock() + poll_seconds
        log.info("%s: starting on %s", handle, self.version)

    # --- what a batch uses ----------------------------------------------------------------------

    def current(self) -> tuple[str, Any]:
        """The version and module for the next batch; starts a background poll when one is due."""
        with self._lock:
            if self._clock() >= self._next_poll and self._polling is None:
                self._polling = threading.Thread(
                    target=self._poll_in_background, name="beam-hub-follow", daemon=True
                )
                self._polling.start()
            return self.version, self._module

    def computed(self, version: str, batch: Any, outputs: Any) -> None:
        """Note the last batch the current version computed (what a new version is checked on)."""
        if version != self.version:
            return
        shape = self._structure(outputs)
        with self._lock:
            if version == self.version:
                self._last = (batch, shape)

    def compute(self, batch: Any) -> tuple[str, Any]:
        """``batch``'s outputs by the version in use (``probe``), and that version; noted for the
        next version's check. One call, so a follower in another process (``large_model``)
        answers a batch in one round trip."""
        version, module = self.current()
        outputs = self._probe(module, batch)
        self.computed(version, batch, outputs)
        return version, outputs

    def spec(self, apply: Any) -> Any:
        """The signature the version in use applies (``module.spec(apply)``)."""
        return self.current()[1].spec(apply)

    def events(self) -> list[Event]:
        """The swaps and rejections since the last call (each reported once, to one caller)."""
        with self._lock:
            out, self._events = self._events, []
        return out

    @property
    def rejected(self) -> dict[str, str]:
        """Versions rejected so far, with why."""
        return dict(self._rejected)

    # --- polling --------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Ask where the name points now; check and adopt a new version. True when it swapped."""
        try:
            concrete = self._resolve(self.handle)
        except Exception as e:  # noqa: BLE001 - a failed poll keeps the current version
            log.warning(
                "%s: could not ask where it points now (%s); staying on %s", self.handle, e, self.version
            )
            return False
        if concrete == self.version or concrete in self._rejected:
            return False
        why = ""
        module = None
        try:
            module = self._load(concrete)
            why = self._differences(module)
        except Exception as e:  # noqa: BLE001 - any failure rejects the version, never the stream
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if why:
            del module
            self._rejected[concrete] = why
            with self._lock:
                self._events.append(Event("rejected", concrete, why))
            log.warning("%s: not adopting %s (%s); staying on %s", self.handle, concrete, why, self.version)
            gc.collect()
            return False
        with self._lock:
            old, self._module = self._module, module
            previous, self.version = self.version, concrete
            self._last = None
            self._events.append(Event("swap", concrete))
        log.warning("%s: now on %s (was %s)", self.handle, concrete, previous)
        del old, module  # the old module goes once no batch in flight holds it
        gc.collect()
        return True

    def _poll_in_background(self) -> None:
        try:
            self.poll()
        finally:
            with self._lock:
                self._polling = None
                self._next_poll = self._clock() + self._poll_seconds

    def _differences(self, module: Any) -> str:
        """Why ``module`` cannot replace the current one ("" when it can)."""
        want, got = self._signature(self._module), self._signature(module)
        if want != got:
            return f"its signature changed: {_first_difference(want, got)}"
        with self._lock:
            last = self._last
        if last is None:
            return ""
        batch, shape = last
        outputs = self._probe(module, batch)
        found = self._structure(outputs)
        if found != shape:
            return f"on the last batch its outputs differ: {_first_difference(shape, found)}"
        return ""


def output_structure(outputs: Any) -> Any:
    """What must stay the same between versions in a batch's outputs: for each output (a dict's
    keys, or one array) its dtype and its shape past the batch dimension. Takes a list of
    per-element outputs, a dict of batch arrays, or a batch array."""
    if isinstance(outputs, list):
        if not outputs:
            return ()
        first = outputs[0]
        if isinstance(first, dict):
            return tuple(sorted((k, _kind(v)) for k, v in first.items()))
        return _kind(first)
    if isinstance(outputs, dict):
        return tuple(sorted((k, _kind(v, batched=True)) for k, v in outputs.items()))
    if hasattr(outputs, "schema"):  # an Arrow table or record batch: its columns and their types
        return tuple((f.name, str(f.type)) for f in outputs.schema)
    return _kind(outputs, batched=True)


def signature_structure(spec: Any) -> Any:
    """A signature's inputs and outputs (name, dtype, shape past the batch dimension; None where
    unknown) from a :class:`beam_hub.signatures.SignatureSpec`."""

    def infos(tensors: Any) -> tuple:
        return tuple(sorted((name, (info.dtype.name, _dims(info.shape))) for name, info in tensors.items()))

    return (("inputs", infos(spec.inputs)), ("outputs", infos(spec.outputs)))


def _dims(shape: Any) -> Any:
    dims = getattr(shape, "as_list", lambda: None)() if getattr(shape, "rank", None) is not None else None
    return None if dims is None else tuple(dims[1:])


def _kind(value: Any, *, batched: bool = False) -> tuple[str, tuple[int, ...]]:
    array = np.asarray(value)
    shape = array.shape[1:] if batched else array.shape
    dtype = "string" if array.dtype.kind in "SUO" else str(array.dtype)  # bytes' width is not a type
    return dtype, tuple(int(d) for d in shape)


def _first_difference(want: Any, got: Any, where: str = "") -> str:
    if _pairs(want) and _pairs(got):
        a, b = dict(want), dict(got)
        if set(a) != set(b):
            return f"{where}{sorted(map(str, a))} became {sorted(map(str, b))}"
        for key in a:
            if a[key] != b[key]:
                return _first_difference(a[key], b[key], f"{where}{key}: ")
    return f"{where}{want} became {got}"


def _pairs(value: Any) -> bool:
    """A tuple of (name, value) pairs, names being strings (a structure, not a dtype and shape)."""
    return (
        isinstance(value, tuple)
        and all(
            isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and not isinstance(x[1], str)
            for x in value
        )
        and not (len(value) == 2 and isinstance(value[0], str))
    )
