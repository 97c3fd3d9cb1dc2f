"""Module caches: the on-disk ``local`` tier every resolve goes through, optionally behind a shared one.

``open_cache`` picks them: a local directory gives a :class:`LocalCache`; a remote URL
(``gs://bucket/prefix``) gives a :class:`TieredCache`, the shared tier in front of a local one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from beam_hub import settings
from beam_hub.cache.base import Filled, ModuleCache, cache_key
from beam_hub.cache.local import EntryInfo, LocalCache
from beam_hub.cache.manifest import MANIFEST_NAME, Manifest
from beam_hub.urls import is_remote_url, local_path

if TYPE_CHECKING:
    from beam_hub.cache.tiered import TieredCache


def open_cache(
    cache_dir: str | os.PathLike | None = None, local_cache_dir: str | os.PathLike | None = None
) -> LocalCache | TieredCache:
    """The cache for ``cache_dir`` (argument, else TFHUB_CACHE_DIR, else ~/.cache/beam_hub).

    A remote ``cache_dir`` (gs://bucket/prefix or any fsspec URL) becomes a shared tier in front of
    the origin, with a local tier at ``local_cache_dir`` (argument, else BEAM_HUB_LOCAL_CACHE_DIR,
    else ~/.cache/beam_hub).
    """
    chosen = os.fspath(cache_dir) if cache_dir else settings.tfhub_cache_dir()
    if chosen and is_remote_url(chosen):
        from beam_hub.cache.remote import RemoteCache
        from beam_hub.cache.tiered import TieredCache

        local = local_cache_dir or settings.local_cache_dir() or settings.default_local_cache_dir()
        return TieredCache(LocalCache(local), RemoteCache(chosen))
    return LocalCache(local_path(chosen) if chosen else None)


__all__ = [
    "MANIFEST_NAME",
    "EntryInfo",
    "Filled",
    "LocalCache",
    "Manifest",
    "ModuleCache",
    "cache_key",
    "open_cache",
]
