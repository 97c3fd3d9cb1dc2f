"""What the server learns from inside a module by reading its files: signatures and the audit.

Nothing here imports TensorFlow or loads a module. Signatures come from ``saved_model.pb``
(:mod:`beam_hub.signature_defs`), the audit from the same protobufs (:mod:`beam_hub.safety`), so
a module that cannot load here (a custom op it lacks) or that the audit flags still shows its
signatures. A module served as an archive is not extracted, nor put in a cache: only its graph
files are read out of it. Inspections are kept per archive digest in a bounded map (the most
recently viewed ``MAX_INSPECTIONS``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beam_hub.archive import safe_extract
from beam_hub.safety.report import AuditReport
from beam_hub.savedmodel import GRAPH_FILES, module_root
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
    """Read the module's signatures and audit it; each failure is shown on the page, not raised.
    A module served as an archive only is not extracted: its graph files alone are read out of
    it (with every check extraction makes) into a temporary directory, removed afterwards."""
    from beam_hub.safety import audit_path
    from beam_hub.safety.scan import scan_saved_model

    if module.directory:
        return _inspect_directory(module.directory, audit_path, module.path)  # remembered per directory
    with tempfile.TemporaryDirectory(prefix="beam-hub-inspect-") as staging:
        try:
            safe_extract(archive.file, staging, what=f"archive {module.path}", keep=_graph_file)
            path = module_root(staging, f"archive {module.path}")
        except Exception as e:  # noqa: BLE001 - shown on the page
            return Inspection(None, _why(e), None, _why(e))
        return _inspect_directory(path, scan_saved_model, module.path)  # a fresh directory each time


def _graph_file(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1] in GRAPH_FILES


def _inspect_directory(path: str, audit: Callable[[str], AuditReport], label: str) -> Inspection:
    """Signatures and audit of the module directory ``path``; the report names the module by its
    URL path ``label``, not by the server's own file system path."""
    from beam_hub.signature_defs import read_signatures

    signatures: dict[str, Any] | None = None
    error = audit_error = None
    report: AuditReport | None = None
    try:
        signatures = read_signatures(path)
    except Exception as e:  # noqa: BLE001 - shown on the page
        error = _why(e)
    try:
        report = dataclasses.replace(audit(path), path=label)
    except Exception as e:  # noqa: BLE001 - shown on the page
        audit_error = _why(e)
    return Inspection(signatures, error, report, audit_error)


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"
