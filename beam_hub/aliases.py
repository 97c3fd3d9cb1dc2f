"""Version aliases: ``DEST@latest`` names the newest version published under DEST.

    gs://bucket/models/fruit@latest          -> gs://bucket/models/fruit/7.tar.gz
    /srv/hub/acme/fruit@latest               -> /srv/hub/acme/fruit/7.tar.gz
    gs://bucket/serving/fruit@latest         -> gs://bucket/serving/fruit/1733300000  (TF Serving, TFX)
    http://hub.example.com/acme/fruit@latest -> http://hub.example.com/acme/fruit/7  (asked of `beam-hub serve`)

DEST is a :func:`beam_hub.publish` destination or a TF Serving base path on any fsspec URL (its
whole integer versions are listed: see :mod:`beam_hub.layout`) or a `beam-hub serve` model URL
(``GET DEST/latest`` answers 302 to the newest version).
An alias is turned into a concrete handle before anything is cached: the cache never holds an
entry under an alias, and a job resolves it once, on the launcher, so that every worker applies
the same version.
"""

from __future__ import annotations

import logging
import os
import urllib.parse

from beam_hub import layout
from beam_hub.errors import DownloadError, ModuleNotFoundAtHandleError
from beam_hub.urls import protocol

log = logging.getLogger(__name__)

ALIASES = ("latest",)
_NO_ALIASES = ("hf",)  # protocols whose own "@" means something else (a Hugging Face revision)


def split_alias(handle: str) -> tuple[str, str | None]:
    """(DEST, alias) for ``DEST@latest`` (a ``#`` pin after it is kept on DEST), else (handle, None)."""
    body, hash_, fragment = handle.partition("#")
    base, at, alias = body.rpartition("@")
    if not at or alias not in ALIASES or not base or protocol(body) in _NO_ALIASES:
        return handle, None
    return base.rstrip("/") + (hash_ + fragment if hash_ else ""), alias


def resolve_alias(handle: str | os.PathLike) -> str:
    """The concrete handle ``DEST@latest`` names now (DEST's newest version); any other handle as given."""
    raw = os.fspath(handle)
    dest, alias = split_alias(raw)
    if alias is None:
        return raw
    base, hash_, fragment = dest.partition("#")
    if protocol(base) in ("http", "https"):
        concrete = _latest_served(base)
    else:
        concrete = layout.latest(base)
    concrete += hash_ + fragment
    log.info("%s is %s", raw, concrete)
    return concrete


def resolve_version(handle: str | os.PathLike) -> str:
    """The concrete handle a moving name stands for now: ``DEST@latest`` -> DEST's newest version;
    a Hugging Face branch or tag (``hf://org/repo[@main][/SUBDIR]``) -> ``hf://org/repo@<commit>[/SUBDIR]``
    (unchanged offline or when the Hub cannot be reached); any other handle as given. Pipelines
    call it once, on the launcher, so that every worker applies the same version."""
    raw = resolve_alias(handle)
    if protocol(raw) == "hf":
        from beam_hub.resolvers.huggingface import pin

        return pin(raw)
    return raw


def _latest_served(url: str) -> str:
    from beam_hub.http_stream import open_url

    asked = url.rstrip("/") + "/latest"
    try:
        response = open_url(asked, follow_redirects=False)
    except DownloadError:
        raise
    except Exception as e:
        raise DownloadError(f"Asking {asked} for the newest version failed: {type(e).__name__}: {e}") from e
    with response:
        location = response.headers.get("Location")
        status = response.status
    if status == 404:
        raise ModuleNotFoundAtHandleError(f"{url}@latest: the server has no versions at {url}.")
    if status not in (301, 302, 303, 307, 308) or not location:
        raise DownloadError(
            f"{url}@latest: the server answered HTTP {status} to {asked}, not a redirect to the newest "
            "version; `beam-hub serve` answers 302. Name a version instead."
        )
    concrete = urllib.parse.urljoin(asked, location.strip())
    if urllib.parse.urlsplit(concrete).netloc != urllib.parse.urlsplit(url).netloc or not concrete.startswith(
        ("http://", "https://")
    ):
        raise DownloadError(
            f"{url}@latest: the server pointed the newest version at {concrete!r}, off its host."
        )
    return concrete
