"""Kaggle Models (where tfhub.dev went), in every form people write them:

    https://www.kaggle.com/models/O/M/frameworks/F/variations/V/versions/N
    https://www.kaggle.com/models/O/M/F/V/N
    kaggle://O/M/F/V/N                        (kagglehub's O/M/F/V/N with a scheme)

All forms of one version share one cache entry, keyed by ``kaggle://o/m/f/v/n`` (lower case: the
framework is case-insensitive, ``tensorFlow2`` = ``tensorflow2``). A version kagglehub already
downloaded (``$KAGGLEHUB_CACHE/models/O/M/F/V/N`` with its ``N.complete`` marker) is used in
place, read-only. Otherwise it is fetched from BEAM_HUB_KAGGLE_URL with the hosting protocol
(``?tf-hub-format=compressed``), following Kaggle's redirect to a signed storage URL; every retry
and every resume starts again at Kaggle, so an expired signed URL is replaced by a fresh one.
Credentials (KAGGLE_API_TOKEN, else KAGGLE_USERNAME + KAGGLE_KEY, else kaggle.json) go to the
Kaggle host only, never to the storage host, and are never logged.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass

from beam_hub import settings
from beam_hub.cache.base import ModuleCache
from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import Handle, with_format_query
from beam_hub.resolvers.archive import fetch_archive, pinned
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import is_saved_model_dir

log = logging.getLogger(__name__)

_HOSTS = ("www.kaggle.com", "kaggle.com")
_SLUG = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_LONG = re.compile(
    rf"^/models/({_SLUG})/({_SLUG})/frameworks/({_SLUG})/variations/({_SLUG})/versions/(\d+)/?$"
)
_SHORT = re.compile(rf"^/models/({_SLUG})/({_SLUG})/({_SLUG})/({_SLUG})/(\d+)/?$")
_SEGMENTS = re.compile(rf"^({_SLUG})/({_SLUG})/({_SLUG})/({_SLUG})/(\d+)/?$")


@dataclass(frozen=True)
class KaggleModel:
    """One version of a Kaggle model: owner, model, framework, variation, version."""

    owner: str
    model: str
    framework: str
    variation: str
    version: int

    @property
    def key(self) -> str:
        """The cache key every form of this version shares."""
        return f"kaggle://{self.owner}/{self.model}/{self.framework}/{self.variation}/{self.version}".lower()

    def url(self, base: str) -> str:
        """The hosting-protocol URL under ``base`` (BEAM_HUB_KAGGLE_URL)."""
        path = (
            f"/models/{self.owner}/{self.model}/frameworks/{self.framework}/variations/{self.variation}"
            f"/versions/{self.version}"
        )
        return with_format_query(base + path, "compressed")


def parse_kaggle(handle: Handle) -> KaggleModel | None:
    """The Kaggle model version a handle names, or None when it is not a Kaggle handle."""
    if handle.protocol == "kaggle":
        match = _SEGMENTS.match(handle.location.split("://", 1)[1])
        if match is None:
            raise UnsupportedHandleError(
                f"{handle.raw!r}: a Kaggle handle is kaggle://OWNER/MODEL/FRAMEWORK/VARIATION/VERSION "
                "(e.g. kaggle://google/bert/tensorFlow2/en-uncased-l-12-h-768-a-12/3)."
            )
    elif handle.is_http:
        parts = urllib.parse.urlsplit(handle.location)
        if parts.hostname not in _HOSTS:
            return None
        match = _LONG.match(parts.path) or _SHORT.match(parts.path)
        if match is None:
            return None
    else:
        return None
    owner, model, framework, variation, version = match.groups()  # slugs: no "/", no leading "."
    return KaggleModel(owner, model, framework, variation, int(version))


def kagglehub_copy(ref: KaggleModel) -> str | None:
    """The version's directory in kagglehub's cache when kagglehub completed it and it is a SavedModel."""
    variations = os.path.join(settings.kagglehub_cache(), "models", ref.owner, ref.model)
    try:
        frameworks = [f for f in os.listdir(variations) if f.lower() == ref.framework.lower()]
    except OSError:
        return None
    for framework in frameworks:
        base = os.path.join(variations, framework, ref.variation)
        path = os.path.join(base, str(ref.version))
        if os.path.isfile(path + ".complete") and is_saved_model_dir(path):
            return path
    return None


def auth_headers() -> dict[str, str]:
    """The Authorization header for the Kaggle host, from the user's Kaggle credentials (if any)."""
    found = settings.kaggle_credentials()
    if found is None:
        return {}
    kind, secret = found
    if kind == "token":
        return {"Authorization": f"Bearer {secret}"}
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


class KaggleResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        return handle.protocol == "kaggle" or parse_kaggle(handle) is not None

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        ref = parse_kaggle(handle)
        if ref is None:
            raise UnsupportedHandleError(f"{handle.raw!r} is not a Kaggle model version.")
        if handle.sha256 is None:  # kagglehub keeps no archive digest: a pin needs our own download
            local = kagglehub_copy(ref)
            if local is not None:
                log.info("Using kagglehub's copy of %s at %s", handle.raw, local)
                return local
        key = ref.key + (f"#sha256={handle.sha256}" if handle.sha256 else "")
        url = ref.url(settings.kaggle_url())
        headers = auth_headers()
        return cache.fetch(
            key, lambda staging: fetch_archive(url, staging, handle, headers=headers), accept=pinned(handle)
        )
