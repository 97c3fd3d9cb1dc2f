"""A shared tier (any fsspec URL, e.g. gs://bucket/hub-cache) in front of the local cache.

    resolve -> local tier hit? -> shared tier has it? copy it -> else one process across all
    machines fetches from the origin (RemoteCache.run_once) and shares it; the others copy it.

A shared tier that cannot be used (permissions, a missing bucket, a network failure) is skipped
with one warning: the module then comes from its origin into the local tier, as without it.
"""

from __future__ import annotations

import logging
import os
import shutil

from beam_hub import settings
from beam_hub.cache.base import Accept, Fill, Filled, cache_key
from beam_hub.cache.local import LocalCache
from beam_hub.cache.manifest import Manifest
from beam_hub.cache.remote import RemoteCache, warn_once

log = logging.getLogger(__name__)


class _Origin:
    """The origin fill, run at most once; remembers its result or its error."""

    def __init__(self, fill: Fill, staging: str) -> None:
        self._fill = fill
        self._staging = staging
        self.filled: Filled | None = None
        self.error: BaseException | None = None

    def __call__(self) -> Filled:
        if self.filled is None:
            try:
                self.filled = self._fill(self._staging)
            except BaseException as e:
                self.error = e
                raise
        return self.filled


class TieredCache:
    """The local cache at ``local.root`` backed by the shared ``remote`` tier.

    Offers resolvers the same ``get``/``fetch`` as :class:`LocalCache`: entries always end up
    in the local tier, which is what ``fetch`` returns.
    """

    def __init__(self, local: LocalCache, remote: RemoteCache) -> None:
        self.local = local
        self.remote = remote

    def __repr__(self) -> str:
        return f"TieredCache({self.local.root!r}, shared={self.remote.url!r})"

    @property
    def root(self) -> str:
        return self.local.root

    def get(self, handle: str, accept: Accept | None = None) -> str | None:
        return self.local.get(handle, accept)

    def fetch(self, handle: str, fill: Fill, *, network: bool = True, accept: Accept | None = None) -> str:
        if settings.offline():  # the shared tier is the network too
            return self.local.fetch(handle, fill, network=network, accept=accept)
        return self.local.fetch(
            handle, lambda staging: self._fill(handle, fill, staging), network=network, accept=accept
        )

    def _fill(self, handle: str, fill: Fill, staging: str) -> Filled:
        """Called under the local lock: copy from the shared tier, or fetch from the origin once."""
        key = cache_key(handle)
        try:
            hit = self._copy_shared(key, handle, staging)
        except Exception as e:  # noqa: BLE001 - any failure of the shared tier: use the origin
            warn_once(self.remote.url, e)
            return fill(staging)
        if hit is not None:
            return hit
        origin = _Origin(fill, staging)
        try:
            if self.remote.run_once(key, lambda: self._share(key, handle, origin())):
                return origin()
            hit = self._copy_shared(key, handle, staging)  # another process fetched it meanwhile
        except Exception as e:
            if origin.error is not None:
                raise
            warn_once(self.remote.url, e)
            return origin()
        return hit if hit is not None else origin()

    def _copy_shared(self, key: str, handle: str, staging: str) -> Filled | None:
        target = os.path.join(staging, "shared")
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        manifest = self.remote.fetch_into(key, target, handle)
        if manifest is None:
            return None
        log.info("Copied %s from the shared cache %s", handle, self.remote.url)
        return Filled(
            root=target,
            source=manifest.source,
            archive_sha256=manifest.archive_sha256,
            files=dict(manifest.files),
        )

    def _share(self, key: str, handle: str, filled: Filled) -> None:
        files = filled.files if filled.files is not None else Manifest.build(filled.root, handle).files
        manifest = Manifest(handle, dict(files), source=filled.source, archive_sha256=filled.archive_sha256)
        try:
            self.remote.put(key, filled.root, manifest)
        except Exception as e:  # noqa: BLE001 - the module is here; sharing it failed
            warn_once(self.remote.url, e)
