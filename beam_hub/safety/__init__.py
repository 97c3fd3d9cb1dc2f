"""Auditing modules before they run: which ops can act outside their tensors, and the policy.

ops.py     the table: op -> kind (file read/write/listing, python call, network, custom op), severity
scan.py    walks every graph and function of a SavedModel's protobufs, nothing loaded or run
report.py  Finding and AuditReport
policy.py  audit_path(path), the per-entry cache in the manifest, warn/refuse/off at load time
            (it takes resolved paths: beam_hub.auditing.audit resolves a handle first)
"""

from beam_hub.safety.policy import audit_path, enforce
from beam_hub.safety.report import AuditReport, Finding

__all__ = ["AuditReport", "Finding", "audit_path", "enforce"]
