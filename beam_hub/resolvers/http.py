"""http(s):// handles, fetched with the TF Hub hosting protocol (?tf-hub-format=compressed).

With ``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED`` the server is asked for ``tf-hub-format=uncompressed``
instead: it answers 303 with the location of the extracted module in the body (e.g. a gs://
directory), which is then resolved like any other handle. ``AUTO`` uses that when the server
offers it and the compressed format otherwise; ``COMPRESSED`` (the default) never asks.
"""

from __future__ import annotations

import os

from beam_hub.cache.local import LocalCache
from beam_hub.download import uncompressed_location
from beam_hub.errors import DownloadError
from beam_hub.handles import Handle, with_format_query
from beam_hub.resolvers.archive import fetch_archive
from beam_hub.resolvers.base import Resolver

LOAD_FORMATS = ("COMPRESSED", "UNCOMPRESSED", "AUTO")


def download_url(handle: Handle) -> str:
    """The URL to GET: as is when it names an archive, else with tf-hub-format=compressed."""
    return handle.location if handle.is_archive else with_format_query(handle.location, "compressed")


def load_format() -> str:
    value = os.environ.get("TFHUB_MODEL_LOAD_FORMAT", "COMPRESSED").strip().upper() or "COMPRESSED"
    if value not in LOAD_FORMATS:
        raise ValueError(f"TFHUB_MODEL_LOAD_FORMAT={value!r}; use one of {', '.join(LOAD_FORMATS)}")
    return value


class HttpResolver(Resolver):
    """tfhub.dev, kaggle.com/models and any server speaking the protocol (e.g. ``beam-hub serve``)."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.is_http

    def __call__(self, handle: Handle, cache: LocalCache) -> str:
        fmt = load_format()
        if fmt != "COMPRESSED" and not handle.is_archive:
            hit = cache.get(handle.raw)
            if hit:
                return hit
            location = uncompressed_location(handle.location)
            if location:
                from beam_hub.resolvers import resolve  # the registry resolves the mirror's location

                return resolve(location, cache_dir=cache.root)
            if fmt == "UNCOMPRESSED":
                raise DownloadError(
                    f"{handle.location} offers no uncompressed format (no 303 for tf-hub-format=uncompressed). "
                    "Unset TFHUB_MODEL_LOAD_FORMAT (or set AUTO) to download the compressed archive."
                )
        return cache.fetch(handle.raw, lambda staging: fetch_archive(download_url(handle), staging, handle))
