"""Resolvers, one per protocol family, behind a registry: the first that supports a handle wins."""

from __future__ import annotations

import os
import threading

from beam_hub.cache.local import open_cache
from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import Handle, parse_handle
from beam_hub.resolvers.archive import ArchiveResolver
from beam_hub.resolvers.base import Resolver
from beam_hub.resolvers.builtin import BuiltinResolver
from beam_hub.resolvers.http import HttpResolver
from beam_hub.resolvers.path import LocalDirResolver
from beam_hub.resolvers.remote_dir import RemoteDirResolver

_lock = threading.Lock()
_registry: list[Resolver] = [BuiltinResolver(), HttpResolver(), ArchiveResolver(), LocalDirResolver(), RemoteDirResolver()]


def register_resolver(resolver: Resolver, *, first: bool = True) -> None:
    """Add a resolver; by default it is tried before the built-in ones."""
    if not isinstance(resolver, Resolver):
        raise TypeError(f"{resolver!r} is not a beam_hub.Resolver")
    with _lock:
        _registry.insert(0, resolver) if first else _registry.append(resolver)


def unregister_resolver(resolver: Resolver) -> None:
    with _lock:
        _registry.remove(resolver)


def registered_resolvers() -> list[Resolver]:
    with _lock:
        return list(_registry)


def resolve(handle: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
            local_cache_dir: str | os.PathLike | None = None) -> str:
    """Return a local directory holding the module ``handle`` points at.

    Handles: a local directory or ``file://`` URL (used in place); a ``.tar.gz``/``.tgz``/``.tar``
    at a local path or any fsspec URL (extracted into the cache); a directory at any other fsspec
    URL such as ``gs://`` (copied into the cache); an ``http(s)://`` URL served with the TF Hub
    protocol (``?tf-hub-format=compressed``). ``cache_dir`` defaults to ``TFHUB_CACHE_DIR``, else
    ``~/.cache/beam_hub``; a remote ``cache_dir`` (``gs://bucket/prefix``) is a cache shared by
    every machine, in front of a local one at ``local_cache_dir`` (else BEAM_HUB_LOCAL_CACHE_DIR).
    Safe to call from many processes, on many machines, at once.
    """
    parsed: Handle = parse_handle(handle)
    cache = open_cache(cache_dir, local_cache_dir)
    for resolver in registered_resolvers():
        if resolver.is_supported(parsed):
            return resolver(parsed, cache)
    raise UnsupportedHandleError(
        f"No resolver supports {parsed.raw!r}. Use a local path, an fsspec URL (gs://, s3://, ...), "
        "an http(s) URL, or register a resolver with beam_hub.register_resolver()."
    )


__all__ = ["Resolver", "register_resolver", "registered_resolvers", "resolve", "unregister_resolver"]
