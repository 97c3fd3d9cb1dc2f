"""Moving names for versions: ``DEST@latest`` (the newest) and named aliases ``DEST@NAME``.

    gs://bucket/models/fruit@latest          -> gs://bucket/models/fruit/7.tar.gz
    gs://bucket/models/fruit@champion        -> gs://bucket/models/fruit/6.tar.gz  (set by `beam-hub alias set`)
    /srv/hub/acme/fruit@latest               -> /srv/hub/acme/fruit/7.tar.gz
    gs://bucket/serving/fruit@latest         -> gs://bucket/serving/fruit/1733300000  (TF Serving, TFX)
    http://hub.example.com/acme/fruit@latest -> http://hub.example.com/acme/fruit/7  (asked of `beam-hub serve`)

DEST is a :func:`beam_hub.publish` destination or a TF Serving base path on any fsspec URL (its
whole integer versions are listed: see :mod:`beam_hub.layout`; named aliases are stored beside
them: see :mod:`beam_hub.alias_store`) or a `beam-hub serve` model URL (``GET DEST/latest`` and
``GET DEST/NAME`` answer 302 to the version). A handle whose ``@NAME`` is no alias of DEST but
which names a file or directory itself (``/models/m@2``) is that file.
An alias is turned into a concrete handle before anything is cached: the cache never holds an
entry under an alias, and a job resolves it once, on the launcher, so that every worker applies
the same version.
"""

from __future__ import annotations

import logging
import os
import urllib.parse

from beam_hub import alias_store, layout
from beam_hub.download import filesystem
from beam_hub.errors import DownloadError, ModuleNotFoundAtHandleError
from beam_hub.urls import protocol

log = logging.getLogger(__name__)

LATEST = alias_store.LATEST
_NO_ALIASES = ("hf",)  # protocols whose own "@" means something else (a Hugging Face revision)


def split_alias(handle: str) -> tuple[str, str | None]:
    """(DEST, alias) for ``DEST@latest`` or ``DEST@NAME`` (a ``#`` pin after it is kept on DEST),
    else (handle, None)."""
    body, hash_, fragment = handle.partition("#")
    base, at, alias = body.rpartition("@")
    if not at or not alias_store.NAME.fullmatch(alias) or not base or protocol(body) in _NO_ALIASES:
        return handle, None
    if "/" not in base.split("://", 1)[-1] and "://" in base:  # user@host: a URL's credentials
        return handle, None
    return base.rstrip("/") + (hash_ + fragment if hash_ else ""), alias


def resolve_alias(handle: str | os.PathLike) -> str:
    """The concrete handle ``DEST@latest`` (DEST's newest version) or ``DEST@NAME`` (the version
    alias NAME points at) names now; any other handle as given."""
    raw = os.fspath(handle)
    dest, alias = split_alias(raw)
    if alias is None:
        return raw
    base, hash_, fragment = dest.partition("#")
    if protocol(base) in ("http", "https"):
        concrete = _served(base, alias)
    elif alias == LATEST:
        concrete = layout.latest(base)
    else:
        found = alias_store.resolve(base, alias)
        if found is None:
            if _exists(raw.partition("#")[0]):
                return raw  # a file or directory whose own name holds "@"
            raise alias_store.missing(base, alias)
        concrete = found
    concrete += hash_ + fragment
    log.info("%s is %s", raw, concrete)
    return concrete


def _exists(path: str) -> bool:
    try:
        fs, root = filesystem(path)
        return bool(fs.exists(root))
    except (OSError, ValueError):
        return False


def _served(url: str, alias: str) -> str:
    """Ask a `beam-hub serve` model URL where ``alias`` points (``GET URL/ALIAS`` -> 302)."""
    from beam_hub.http_stream import open_url

    asked = url.rstrip("/") + "/" + alias
    try:
        response = open_url(asked, follow_redirects=False)
    except DownloadError:
        raise
    except Exception as e:
        raise DownloadError(f"Asking {asked} where {alias} points failed: {type(e).__name__}: {e}") from e
    with response:
        location = response.headers.get("Location")
        status = response.status
    if status == 404:
        what = "no versions" if alias == LATEST else f"no alias {alias!r}"
        raise ModuleNotFoundAtHandleError(f"{url}@{alias}: the server has {what} at {url}.")
    if status not in (301, 302, 303, 307, 308) or not location:
        raise DownloadError(
            f"{url}@{alias}: the server answered HTTP {status} to {asked}, not a redirect to a "
            "version; `beam-hub serve` answers 302. Name a version instead."
        )
    concrete = urllib.parse.urljoin(asked, location.strip())
    if urllib.parse.urlsplit(concrete).netloc != urllib.parse.urlsplit(url).netloc or not concrete.startswith(
        ("http://", "https://")
    ):
        raise DownloadError(f"{url}@{alias}: the server pointed it at {concrete!r}, off its host.")
    return concrete
