"""What every cache offers resolvers: ``get`` a whole entry, or ``fetch`` one by filling it once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from beam_hub.cache.manifest import Manifest
from beam_hub.files import FileRecords


@dataclass
class Filled:
    """What a fill function put in its staging directory."""

    root: str  # the module directory inside the staging directory
    source: str  # the URL or path it came from
    archive_sha256: str | None = None
    files: FileRecords | None = None  # the files' records, when the fill already hashed them


#: Fills a new staging directory with a module and says what it put there.
Fill = Callable[[str], Filled]
#: Decides whether an existing entry may be used (e.g. a built-in module's build id matches).
Accept = Callable[[Manifest], bool]


def cache_key(handle: str) -> str:
    """sha1 of the handle string exactly as given, as tensorflow_hub computes it."""
    return hashlib.sha1(handle.encode("utf-8")).hexdigest()


class ModuleCache(Protocol):
    """The interface resolvers use: :class:`~beam_hub.cache.local.LocalCache` and
    :class:`~beam_hub.cache.tiered.TieredCache` implement it."""

    @property
    def root(self) -> str:
        """The local directory that holds the entries."""

    def get(self, handle: str, accept: Accept | None = None) -> str | None:
        """The entry's directory when it is present and whole, else None (never fetches)."""

    def fetch(self, handle: str, fill: Fill, *, network: bool = True, accept: Accept | None = None) -> str:
        """The entry's directory, calling ``fill`` once, in one process, when it is missing or damaged."""
