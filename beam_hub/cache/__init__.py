"""Module caches. ``local`` is the on-disk tier every resolve goes through."""

from beam_hub.cache.local import EntryInfo, Filled, LocalCache, cache_key, open_cache
from beam_hub.cache.manifest import MANIFEST_NAME, Manifest

__all__ = ["EntryInfo", "Filled", "LocalCache", "MANIFEST_NAME", "Manifest", "cache_key", "open_cache"]
