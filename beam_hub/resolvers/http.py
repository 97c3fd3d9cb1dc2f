"""http(s):// handles, fetched with the TF Hub hosting protocol (?tf-hub-format=compressed)."""

from __future__ import annotations

from beam_hub.cache.local import LocalCache
from beam_hub.handles import Handle, with_format_query
from beam_hub.resolvers.archive import fetch_archive
from beam_hub.resolvers.base import Resolver


def download_url(handle: Handle) -> str:
    """The URL to GET: as is when it names an archive, else with tf-hub-format=compressed."""
    return handle.location if handle.is_archive else with_format_query(handle.location, "compressed")


class HttpResolver(Resolver):
    """tfhub.dev, kaggle.com/models and any server speaking the protocol (e.g. ``beam-hub serve``)."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.is_http

    def __call__(self, handle: Handle, cache: LocalCache) -> str:
        return cache.fetch(handle.raw, lambda staging: fetch_archive(download_url(handle), staging, handle))
