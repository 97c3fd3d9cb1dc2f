"""The resolver registry: the first registered resolver that supports a handle resolves it."""

from __future__ import annotations

import threading

from beam_hub.cache.base import ModuleCache
from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import Handle
from beam_hub.resolvers.base import Resolver

_lock = threading.Lock()
_registry: list[Resolver] = []
_nesting = threading.local()
MAX_NESTING = 4


def register_resolver(resolver: Resolver, *, first: bool = True) -> None:
    """Add a resolver; by default it is tried before the built-in ones."""
    if not isinstance(resolver, Resolver):
        raise TypeError(f"{resolver!r} is not a beam_hub.Resolver")
    with _lock:
        _registry.insert(0, resolver) if first else _registry.append(resolver)


def unregister_resolver(resolver: Resolver) -> None:
    """Remove a resolver added with :func:`register_resolver` (ValueError if it is not there)."""
    with _lock:
        _registry.remove(resolver)


def registered_resolvers() -> list[Resolver]:
    """The resolvers in the order they are asked; the first that supports a handle resolves it."""
    with _lock:
        return list(_registry)


def resolve_in(handle: Handle, cache: ModuleCache) -> str:
    """Resolve a parsed handle through ``cache`` (resolvers call this for handles they find nested,
    at most MAX_NESTING deep: a location naming itself again is refused, not followed forever)."""
    depth = getattr(_nesting, "depth", 0)
    if depth >= MAX_NESTING:
        raise UnsupportedHandleError(
            f"{handle.raw!r} is the {depth + 1}th handle in a chain of locations naming each other; "
            "refusing to follow more. The server's locations are misconfigured."
        )
    _nesting.depth = depth + 1
    try:
        for resolver in registered_resolvers():
            if resolver.is_supported(handle):
                return resolver(handle, cache)
    finally:
        _nesting.depth = depth
    raise UnsupportedHandleError(
        f"No resolver supports {handle.raw!r}. Use a local path, an fsspec URL (gs://, s3://, ...), "
        "an http(s) URL, or register a resolver with beam_hub.register_resolver()."
    )
