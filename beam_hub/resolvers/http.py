"""http(s):// handles, fetched with the TF Hub hosting protocol (?tf-hub-format=compressed).

With ``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED`` the server is asked for ``tf-hub-format=uncompressed``
instead: it answers 303 with the location of the extracted module in the body (e.g. a gs://
directory), which is then resolved like any other handle. ``AUTO`` uses that when the server
offers it and the compressed format otherwise; ``COMPRESSED`` (the default) never asks.
"""

from __future__ import annotations

from beam_hub import settings
from beam_hub.cache.base import ModuleCache
from beam_hub.download import uncompressed_location
from beam_hub.errors import DownloadError
from beam_hub.handles import Handle, parse_handle, with_format_query
from beam_hub.resolvers.archive import fetch_archive
from beam_hub.resolvers.base import Resolver
from beam_hub.resolvers.registry import resolve_in


def download_url(handle: Handle) -> str:
    """The URL to GET: as is when it names an archive, else with tf-hub-format=compressed."""
    return handle.location if handle.is_archive else with_format_query(handle.location, "compressed")


class HttpResolver(Resolver):
    """tfhub.dev, kaggle.com/models and any server speaking the protocol (e.g. ``beam-hub serve``)."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.is_http

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        fmt = settings.model_load_format()
        if fmt != "COMPRESSED" and not handle.is_archive:
            hit = cache.get(handle.raw)
            if hit:
                return hit
            location = uncompressed_location(handle.location)
            if location:  # the mirror's location, through the same cache (and its shared tier)
                return resolve_in(parse_handle(location), cache)
            if fmt == "UNCOMPRESSED":
                raise DownloadError(
                    f"{handle.location} offers no uncompressed format (no 303 for tf-hub-format=uncompressed). "
                    "Unset TFHUB_MODEL_LOAD_FORMAT (or set AUTO) to download the compressed archive."
                )
        return cache.fetch(handle.raw, lambda staging: fetch_archive(download_url(handle), staging, handle))
