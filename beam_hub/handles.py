"""Parse a module handle: where it points, whether it names an archive, and any pins."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field

from beam_hub.archive import is_archive_name
from beam_hub.errors import UnsupportedHandleError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Handle:
    """A parsed handle. ``raw`` is the string as given: the cache key is its sha1."""

    raw: str
    protocol: str  # "file" for local paths and file:// URLs
    location: str  # the URL without its #fragment; a plain absolute path for local handles
    pins: dict[str, str] = field(default_factory=dict)  # from "#sha256=<hex>"

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

    @property
    def sha256(self) -> str | None:
        return self.pins.get("sha256")


def parse_handle(handle: str | os.PathLike) -> Handle:
    """Parse a path, ``file://`` URL, fsspec URL or http(s) URL, with an optional ``#sha256=`` pin."""
    raw = os.fspath(handle)
    if not isinstance(raw, str) or not raw.strip():
        raise UnsupportedHandleError(f"A module handle must be a non-empty string or path, got {handle!r}.")
    body, _, fragment = raw.partition("#")
    pins = dict(urllib.parse.parse_qsl(fragment)) if fragment else {}
    unknown = set(pins) - {"sha256"}
    if unknown:
        raise UnsupportedHandleError(f"Handle {raw!r}: unknown pin(s) {sorted(unknown)}; only '#sha256=<hex>' is understood.")
    if "sha256" in pins:
        pins["sha256"] = pins["sha256"].lower()
        if not _HEX64.match(pins["sha256"]):
            raise UnsupportedHandleError(f"Handle {raw!r}: the sha256 pin must be 64 hex digits.")
    match = _SCHEME.match(body)
    if not match:
        return Handle(raw, "file", os.path.abspath(os.path.expanduser(body)), pins)
    protocol = match.group(1).lower()
    if protocol in ("file", "local"):
        return Handle(raw, "file", os.path.abspath(urllib.parse.unquote(body[match.end():])), pins)
    return Handle(raw, protocol, body, pins)


def with_format_query(url: str, fmt: str = "compressed") -> str:
    """``url`` with ``tf-hub-format=<fmt>`` merged into its query (replacing any given one)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "tf-hub-format"]
    query.append(("tf-hub-format", fmt))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query), fragment=""))
