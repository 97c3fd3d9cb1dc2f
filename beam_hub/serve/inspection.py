"""What the server learns from inside a module by reading its files: signatures and the audit.

Nothing here imports TensorFlow or loads a module. Signatures come from ``saved_model.pb``
(:mod:`beam_hub.signature_defs`), the audit from the same protobufs (:mod:`beam_hub.safety`), so
a module that cannot load here (a custom op it lacks) or that the audit flags still shows its
signatures. Inspections are kept per archive digest in a bounded map (the most recently viewed
``MAX_INSPECTIONS``); the audit also in the cache entry's manifest, where a later load finds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from beam_hub.safety.report import AuditReport
from beam_hub.serve.store import Archive, Module

MAX_INSPECTIONS = 256


@dataclass(frozen=True)
class Inspection:
    """Signatures as JSON (None: not read, ``error`` says why) and the audit (None: ``audit_error``)."""

    signatures: dict[str, Any] | None
    error: str | None
    audit: AuditReport | None
    audit_error: str | None = None

    def signatures_json(self) -> dict[str, Any] | None:
        if self.signatures is None:
            return None
        return {
            name: {"inputs": s["inputs"], "outputs": s["outputs"]}
            for name, s in sorted(self.signatures.items())
        }


class Inspections:
    """Inspections by archive digest, the least recently viewed dropped past ``limit``; thread-safe
    (pages are made on the server's thread pool)."""

    def __init__(self, limit: int = MAX_INSPECTIONS) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, Inspection] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, module: Module, archive: Archive) -> Inspection:
        with self._lock:
            found = self._seen.get(archive.sha256)
            if found is not None:
                self._seen.move_to_end(archive.sha256)
                return found
        found = inspect_module(module, archive)  # outside the lock: other pages go on meanwhile
        with self._lock:
            self._seen[archive.sha256] = found
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)
        return found


def inspect_module(module: Module, archive: Archive) -> Inspection:
    """Read the module's signatures and audit it; each failure is shown on the page, not raised."""
    from beam_hub.resolvers import resolve
    from beam_hub.safety import audit_path
    from beam_hub.signature_defs import read_signatures

    try:
        path = module.directory or resolve(archive.file)
    except Exception as e:  # noqa: BLE001 - shown on the page
        return Inspection(None, _why(e), None, _why(e))
    signatures: dict[str, Any] | None = None
    error = audit_error = None
    report: AuditReport | None = None
    try:
        signatures = read_signatures(path)
    except Exception as e:  # noqa: BLE001 - shown on the page
        error = _why(e)
    try:
        report = audit_path(path)
    except Exception as e:  # noqa: BLE001 - shown on the page
        audit_error = _why(e)
    return Inspection(signatures, error, report, audit_error)


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"
