"""http(s):// handles, fetched with the TF Hub hosting protocol (?tf-hub-format=compressed).

With ``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED`` the server is asked for ``tf-hub-format=uncompressed``
instead: it answers 303 with the location of the extracted module in the body (e.g. a gs://
directory), which is then resolved like any other handle, through the same cache. ``AUTO`` uses
that when the server offers it and the compressed format otherwise; ``COMPRESSED`` (the default)
never asks. A pinned handle (``#sha256=``) always takes the archive: only it can be checked.

The location comes from a remote server, so it may only name remote storage
(REMOTE_LOCATION_PROTOCOLS): a local path or ``file://`` URL is refused, never read.
"""

from __future__ import annotations

from beam_hub import settings
from beam_hub.cache.base import ModuleCache
from beam_hub.download import uncompressed_location
from beam_hub.errors import DownloadError
from beam_hub.handles import Handle, parse_handle, with_format_query
from beam_hub.resolvers.archive import fetch_archive, pinned
from beam_hub.resolvers.base import Resolver
from beam_hub.resolvers.registry import resolve_in
from beam_hub.urls import protocol

#: What a 303 location may name: storage reachable from any machine, never this machine's files.
REMOTE_LOCATION_PROTOCOLS = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "http", "https"})
_MAX_LOCATION_CHARS = 2048


def checked_location(handle: Handle, location: str) -> Handle:
    """The handle a server's uncompressed location names, refused unless it is remote storage."""
    shown = location[:200] + ("..." if len(location) > 200 else "")
    if len(location) > _MAX_LOCATION_CHARS or any(c in location for c in "\r\n\0"):
        raise DownloadError(f"{handle.location} answered with an unusable uncompressed location {shown!r}.")
    scheme = protocol(location)
    if scheme not in REMOTE_LOCATION_PROTOCOLS:
        raise DownloadError(
            f"{handle.location} named {shown!r} as the module's uncompressed location: a remote server may "
            f"only point at remote storage ({', '.join(sorted(REMOTE_LOCATION_PROTOCOLS))}), never at local "
            "files. Refused; unset TFHUB_MODEL_LOAD_FORMAT to download the archive instead."
        )
    target = parse_handle(location)
    if target.is_http and not target.is_archive:
        raise DownloadError(
            f"{handle.location} named {shown!r} as the module's uncompressed location: an http(s) location "
            "must name an archive (.tar.gz, .tgz, .tar), not another hub page. Refused."
        )
    return target


def download_url(handle: Handle) -> str:
    """The URL to GET: as is when it names an archive, else with tf-hub-format=compressed."""
    return handle.location if handle.is_archive else with_format_query(handle.location, "compressed")


class HttpResolver(Resolver):
    """tfhub.dev, kaggle.com/models and any server speaking the protocol (e.g. ``beam-hub serve``)."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.is_http

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        fmt = settings.model_load_format()
        if fmt != "COMPRESSED" and not handle.is_archive and handle.sha256 is None:
            hit = cache.get(handle.raw)
            if hit:
                return hit
            location = uncompressed_location(handle.location)
            if location:  # the mirror's location, through the same cache (and its shared tier)
                return resolve_in(checked_location(handle, location), cache)
            if fmt == "UNCOMPRESSED":
                raise DownloadError(
                    f"{handle.location} offers no uncompressed format (no 303 for tf-hub-format=uncompressed). "
                    "Unset TFHUB_MODEL_LOAD_FORMAT (or set AUTO) to download the compressed archive."
                )
        return cache.fetch(
            handle.raw,
            lambda staging: fetch_archive(download_url(handle), staging, handle),
            accept=pinned(handle),
        )
