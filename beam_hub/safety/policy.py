"""The audit as loading uses it: once per cache entry (kept in its manifest), then warn or refuse.

    BEAM_HUB_AUDIT=warn     log the findings, once per module per process (the default)
    BEAM_HUB_AUDIT=refuse   raise UnsafeModuleError before TensorFlow loads the module
    BEAM_HUB_AUDIT=off      do not audit

``audit=`` on :func:`beam_hub.load`, ``ApplyHubModule``, ``HubModelHandler`` and ``KerasLayer``
overrides the variable; ``allow_ops=[...]`` accepts the named ops (their findings are dropped).
The report stored in an entry's manifest is used while the module's graph file, the auditor and
the TensorFlow version (which decides what counts as an unknown op) are the same.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from beam_hub import settings
from beam_hub.errors import BeamHubError, UnsafeModuleError
from beam_hub.safety.registry import tensorflow_version
from beam_hub.safety.report import AuditReport
from beam_hub.settings import AuditMode

log = logging.getLogger("beam_hub.audit")

AUDITOR = 2  # bump when the scan changes what it finds: reports stored in manifests are redone
_GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
_MEMO_LIMIT = 512
_memo: dict[tuple, AuditReport] = {}
_warned: set[tuple] = set()
_lock = threading.Lock()


def audit_path(path: str) -> AuditReport:
    """The audit of the module directory ``path``: remembered per process, and in the entry's
    manifest when it has one; scanned otherwise."""
    stamp = _graph_stamp(path)
    key = (os.path.realpath(path), stamp)
    with _lock:
        if key in _memo:
            return _memo[key]
    report = _from_manifest(path)
    if report is None:
        from beam_hub.safety.scan import scan_saved_model

        report = scan_saved_model(path)
        _to_manifest(path, report)
    with _lock:
        _memo[key] = report
        while len(_memo) > _MEMO_LIMIT:  # a server audits module after module: keep the newest
            _memo.pop(next(iter(_memo)))
    return report


def enforce(
    path: str, handle: str, *, audit: AuditMode | None = None, allow_ops: Iterable[str] = ()
) -> AuditReport | None:
    """Apply the audit policy to the module at ``path`` before it is loaded (see the module doc)."""
    mode = settings.audit_mode(audit)
    if mode == "off":
        return None
    try:
        report = audit_path(path).allowing(allow_ops)
    except BeamHubError:
        raise  # a SavedModel that does not parse: TensorFlow could not load it either
    except Exception as e:  # a protobuf the scan did not expect: say so, and follow the policy
        problem = f"the audit could not read it ({type(e).__name__}: {e})"
        if mode == "refuse":
            raise UnsafeModuleError(
                f"Refusing to load {handle!r}: {problem}. Load it with audit='warn' to load it unaudited.",
                None,
            ) from e
        log.warning("module %s: %s; loading it unaudited", handle, problem)
        return None
    if report.clean:
        return report
    if mode == "refuse":
        lines = "\n  ".join(f.describe() for f in report.findings)
        raise UnsafeModuleError(
            f"Refusing to load {handle!r}: the audit found {len(report.findings)} op(s) that act outside "
            f"the module's tensors:\n  {lines}\nIf you trust this module, accept these ops with "
            f"allow_ops={sorted({f.op for f in report.findings})!r} or load it with audit='warn'.",
            report,
        )
    key = (os.path.realpath(path), tuple(sorted(allow_ops)))
    with _lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning("module %s: %s", handle, "\n".join(report.lines()))
    return report


def _graph_stamp(path: str) -> tuple:
    for name in _GRAPH_FILES:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            continue
        return (name, st.st_size, st.st_mtime_ns, st.st_ino)
    return ()


def _stored_key(manifest: Any) -> dict[str, Any] | None:
    """What a stored report must match: auditor, TensorFlow version, the graph file's sha256."""
    record = next((manifest.files[n] for n in _GRAPH_FILES if n in manifest.files), None)
    version = tensorflow_version()
    if record is None or version is None:
        return None
    return {"auditor": AUDITOR, "tensorflow": version, "graph_sha256": record.sha256}


def _from_manifest(path: str) -> AuditReport | None:
    from beam_hub.cache import Manifest

    manifest = Manifest.read(path)
    if manifest is None or not isinstance(manifest.audit, dict):
        return None
    key = _stored_key(manifest)
    if key is None or any(manifest.audit.get(k) != v for k, v in key.items()):
        return None
    try:
        report = AuditReport.from_json(manifest.audit["report"])
    except (KeyError, TypeError, ValueError):
        return None
    report.path = path
    return report


def _to_manifest(path: str, report: AuditReport) -> None:
    """Keep the report in the entry's manifest; an entry without one, or read-only, keeps nothing."""
    from beam_hub.cache import Manifest

    manifest = Manifest.read(path)
    key = _stored_key(manifest) if manifest is not None else None
    if manifest is None or not key or not report.op_registry:
        return  # a report that could not check for unknown ops is not kept for a process that can
    manifest.audit = {**key, "report": report.to_json()}
    try:
        manifest.write(path)
    except OSError as e:
        log.debug("audit of %s not stored in its manifest: %s", path, e)
