"""``beam_hub.audit(handle)``: resolve a handle, then audit its module (see :mod:`beam_hub.safety`).

The audit itself works on resolved paths only; resolving lives here, above both."""

from __future__ import annotations

import os
from collections.abc import Iterable

from beam_hub.resolvers import resolve
from beam_hub.safety import AuditReport, audit_path


def audit(
    handle: str | os.PathLike,
    *,
    allow_ops: Iterable[str] = (),
    cache_dir: str | os.PathLike | None = None,
    local_cache_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Resolve ``handle`` and audit its module without loading it: every op that can read or
    write files, list them, call Python, reach the network, or that the installed TensorFlow
    does not know, with where it is reachable from. ``allow_ops`` leaves the named ops out."""
    path = resolve(handle, cache_dir=cache_dir, local_cache_dir=local_cache_dir)
    return audit_path(path).allowing(allow_ops)
