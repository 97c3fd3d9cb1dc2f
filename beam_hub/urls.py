"""What counts as a URL, decided in one place: ``scheme://rest``, with an RFC 3986 scheme.

``file://`` and ``local://`` URLs name local paths; every other scheme is a remote (fsspec) URL.
"""

from __future__ import annotations

import os
import re
import urllib.parse

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
LOCAL_PROTOCOLS = frozenset({"file", "local"})


def protocol(text: str) -> str | None:
    """The lower-cased scheme of a URL, or None for a plain path."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def is_remote_url(text: str) -> bool:
    """True for ``gs://``, ``http://``, ``memory://`` and every other non-local URL."""
    scheme = protocol(text)
    return scheme is not None and scheme not in LOCAL_PROTOCOLS


def local_path(text: str) -> str:
    """The absolute path a plain path or a ``file://``/``local://`` URL names (``~`` expanded)."""
    scheme = protocol(text)
    if scheme in LOCAL_PROTOCOLS:
        return os.path.abspath(urllib.parse.unquote(text.split("://", 1)[1]))
    return os.path.abspath(os.path.expanduser(text))
