"""Parse a module handle: where it points, whether it names an archive, and its ``#sha256=`` pin."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from beam_hub.archive import is_archive_name
from beam_hub.errors import UnsupportedHandleError
from beam_hub.urls import LOCAL_PROTOCOLS, local_path, protocol

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
PINS = ("sha256",)


@dataclass(frozen=True)
class Handle:
    """A parsed handle (hashable). ``raw`` is the string as given: the cache key is its sha1."""

    raw: str
    protocol: str  # "file" for local paths and file:// URLs
    location: str  # the URL without its #fragment; a plain absolute path for local handles
    sha256: str | None = None  # the archive's sha256 from "#sha256=<hex>"

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def is_http(self) -> bool:
        return self.protocol in ("http", "https")

    @property
    def is_archive(self) -> bool:
        path = urllib.parse.urlsplit(self.location).path if not self.is_local else self.location
        return is_archive_name(path)


def parse_handle(handle: str | os.PathLike) -> Handle:
    """Parse a path, ``file://`` URL, fsspec URL or http(s) URL, with an optional ``#sha256=`` pin."""
    raw = os.fspath(handle)
    if not isinstance(raw, str) or not raw.strip():
        raise UnsupportedHandleError(f"A module handle must be a non-empty string or path, got {handle!r}.")
    body, _, fragment = raw.partition("#")
    pins = dict(urllib.parse.parse_qsl(fragment)) if fragment else {}
    unknown = set(pins) - set(PINS)
    if unknown:
        raise UnsupportedHandleError(
            f"Handle {raw!r}: unknown pin(s) {sorted(unknown)}; only '#sha256=<hex>' is understood."
        )
    sha256 = pins["sha256"].lower() if "sha256" in pins else None
    if sha256 is not None and not _HEX64.match(sha256):
        raise UnsupportedHandleError(f"Handle {raw!r}: the sha256 pin must be 64 hex digits.")
    scheme = protocol(body)
    if scheme is None or scheme in LOCAL_PROTOCOLS:
        return Handle(raw, "file", local_path(body), sha256)
    return Handle(raw, scheme, body, sha256)


def with_format_query(url: str, fmt: str = "compressed") -> str:
    """``url`` with ``tf-hub-format=<fmt>`` merged into its query (replacing any given one)."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "tf-hub-format"
    ]
    query.append(("tf-hub-format", fmt))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query), fragment=""))
