"""One loaded module per worker process (or per machine), whatever the number of DoFns and threads."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from apache_beam.utils import multi_process_shared, shared

from beam_hub.batch import LoadedModule
from beam_hub.settings import AuditMode

_registry_lock = threading.Lock()
_registry: dict[str, shared.Shared] = {}
_loads: dict[ModuleKey, int] = {}  # loads in this process (for runners without metrics, e.g. Dask)


def loads_in_this_process(handle: str) -> int:
    """How many times this process loaded ``handle`` (any tags or cache): 1 after a normal run."""
    return sum(n for key, n in _loads.items() if key.handle == handle)


@dataclass(frozen=True)
class ModuleKey:
    """What identifies one loaded module in a process: the same key, the same object."""

    handle: str
    tags: tuple[str, ...] | None = None
    cache_dir: str | None = None
    local_cache_dir: str | None = None
    audit: AuditMode | None = None  # the load policy (see beam_hub.safety.policy); None: BEAM_HUB_AUDIT
    allow_ops: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        """A name for Beam's Shared and multi_process_shared, which also name files in the temp
        directory after it: a digest, never the handle itself (a path or URL)."""
        identity = json.dumps(
            [self.handle, self.tags, self.cache_dir, self.local_cache_dir, self.audit, self.allow_ops]
        )
        return "beam_hub-" + hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def load(self) -> LoadedModule:
        from beam_hub.module import load

        tags = None if self.tags is None else list(self.tags)
        with _registry_lock:
            _loads[self] = _loads.get(self, 0) + 1
        return LoadedModule(
            load(
                self.handle,
                tags=tags,
                cache_dir=self.cache_dir,
                local_cache_dir=self.local_cache_dir,
                audit=self.audit,
                allow_ops=self.allow_ops,
            )
        )


@dataclass
class Acquired:
    module: Any  # LoadedModule, or a proxy to one in the machine's model process
    load_msecs: float | None  # set when this call loaded it


def acquire(key: ModuleKey, *, per_machine: bool = False) -> Acquired:
    """The process's (or, with ``per_machine``, the machine's) module for ``key``, loading it once.

    Per process it uses Beam's ``Shared`` (one object for every thread and DoFn instance, across
    transforms that name the same module). Per machine it uses Beam's ``multi_process_shared``, as
    RunInference's ``large_model`` does: one process holds the module, others call it by proxy.
    """
    loaded: list[float] = []

    def construct() -> LoadedModule:
        start = time.perf_counter()
        module = key.load()
        loaded.append((time.perf_counter() - start) * 1000.0)
        return module

    if per_machine:  # loaded in the machine's model process: load time is not seen here
        proxy = multi_process_shared.MultiProcessShared(key.load, tag=key.tag, always_proxy=True).acquire()
        return Acquired(proxy, None)
    with _registry_lock:
        handle = _registry.setdefault(key.tag, shared.Shared())
    module = handle.acquire(construct, tag=key.tag)
    return Acquired(module, loaded[0] if loaded else None)


_followers: dict[str, Any] = {}


def acquire_follower(
    key: ModuleKey, poll_seconds: float, how: str, make: Any, *, per_machine: bool = False
) -> Any:
    """The process's :class:`beam_hub.follow.Follower` of ``key.handle`` (a moving name), made by
    ``make()`` on first use: one per process and way of computing (``how``), shared by every
    thread and DoFn instance, so each process polls once per interval and holds one version.
    With ``per_machine`` it lives in the machine's model process (as ``large_model`` modules do)
    and this returns a proxy to it."""
    tag = f"{key.tag}-follow-{poll_seconds}-{hashlib.sha256(how.encode()).hexdigest()[:16]}"
    if per_machine:
        return multi_process_shared.MultiProcessShared(make, tag=tag, always_proxy=True).acquire()
    with _registry_lock:
        handle = _registry.setdefault(tag, shared.Shared())
    follower = handle.acquire(make, tag=tag)
    with _registry_lock:
        _followers[tag] = follower  # kept for the process's life: a streaming job polls for weeks
    return follower
