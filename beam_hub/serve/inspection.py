"""What the server learns from inside a module: its audit, and its signatures when the audit is clean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beam_hub.safety.report import AuditReport
from beam_hub.serve.store import Archive, Module


@dataclass(frozen=True)
class Inspection:
    """Signatures (None: not loaded, ``error`` says why) and the audit (None: not audited)."""

    signatures: dict[str, Any] | None
    error: str | None
    audit: AuditReport | None

    def signatures_json(self) -> dict[str, Any] | None:
        if self.signatures is None:
            return None
        return {name: spec.to_json() for name, spec in sorted(self.signatures.items())}


def inspect(cache: dict[str, Inspection], module: Module, archive: Archive) -> Inspection:
    """Once per archive digest. A module with findings is never loaded into the server's process."""
    if archive.sha256 not in cache:
        cache[archive.sha256] = _inspect_now(module, archive)
    return cache[archive.sha256]


def _inspect_now(module: Module, archive: Archive) -> Inspection:
    from beam_hub.resolvers import resolve
    from beam_hub.safety import audit_path

    try:
        path = module.directory or resolve(archive.file)
        report = audit_path(path)
    except Exception as e:  # noqa: BLE001 - shown on the page
        return Inspection(None, f"{type(e).__name__}: {e}", None)
    if not report.clean:
        return Inspection(
            None, "not loaded by this server: the audit found ops that act outside its tensors", report
        )
    try:
        from beam_hub.module import load

        return Inspection(load(path, audit="off").signatures, None, report)
    except Exception as e:  # noqa: BLE001 - shown on the page
        return Inspection(None, f"{type(e).__name__}: {e}", report)
