"""Streaming downloads through fsspec: to disk, with timeouts, retries and a size check."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

import fsspec

from beam_hub import settings
from beam_hub.errors import DownloadError, IntegrityError, ModuleNotFoundAtHandleError
from beam_hub.progress import download_callback

log = logging.getLogger(__name__)

_HTTP = ("http", "https")


def http_filesystem() -> fsspec.AbstractFileSystem:
    """fsspec's HTTP filesystem with connect and read timeouts from the settings."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.connect_timeout(),
        sock_connect=settings.connect_timeout(),
        sock_read=settings.read_timeout(),
    )
    return fsspec.filesystem("http", client_kwargs={"timeout": timeout})


def _retryable(exc: BaseException) -> bool:
    """Connection problems, timeouts, truncated bodies and 5xx are worth another try; 4xx not."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status >= 500 or exc.status in (408, 429)
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError, IntegrityError))


def download(url: str, dest: str, *, what: str | None = None, storage_options: dict | None = None) -> int:
    """Stream ``url`` (any fsspec URL) into the local file ``dest``; return the byte count.

    HTTP(S) gets connect/read timeouts and retries with exponential backoff on connection errors,
    timeouts, truncated bodies and 5xx answers (not on 4xx). The body length is checked against
    Content-Length (or the object's listed size). Never holds the whole file in memory.
    """
    what = what or url
    protocol = fsspec.utils.get_protocol(url)
    if protocol in _HTTP:
        fs, path = http_filesystem(), url
        attempts = 1 + max(0, settings.download_retries())
    else:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        attempts = 1  # backends such as gcsfs retry on their own
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(fs, path, dest, what, listed_size=protocol not in _HTTP)
        except FileNotFoundError as e:
            raise ModuleNotFoundAtHandleError(
                f"Nothing found at {what} ({e}). Check the handle's spelling and version."
            ) from e
        except Exception as e:  # noqa: BLE001 - classified below
            if protocol in _HTTP and not _retryable(e):
                status = getattr(e, "status", None)
                raise DownloadError(
                    f"Downloading {what} failed with HTTP {status}: {getattr(e, 'message', e)}. "
                    + ("Check access rights or credentials for this URL." if status in (401, 403) else
                       "This is a client error; retrying will not help. Check the URL.")
                ) from e
            if protocol not in _HTTP or attempt == attempts:
                if isinstance(e, (DownloadError, ModuleNotFoundAtHandleError)):
                    raise
                raise DownloadError(
                    f"Downloading {what} failed after {attempt} attempt(s): {type(e).__name__}: {e}. "
                    "Check the network and the server; BEAM_HUB_DOWNLOAD_RETRIES and "
                    "BEAM_HUB_READ_TIMEOUT tune retries and timeouts."
                ) from e
            delay = min(30.0, settings.retry_backoff() * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning("Download of %s failed (%s: %s); retry %d/%d in %.1fs",
                        what, type(e).__name__, e, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _download_once(fs: fsspec.AbstractFileSystem, path: str, dest: str, what: str, listed_size: bool) -> int:
    callback = download_callback(what)
    try:
        fs.get_file(path, dest, callback=callback)
    finally:
        callback.close()
    got = os.path.getsize(dest)
    expected = callback.size  # Content-Length for HTTP; set by some other backends
    if expected is None and listed_size:
        try:
            expected = fs.size(path)
        except Exception:  # noqa: BLE001 - the listed size is a best-effort check
            expected = None
    if expected is not None and got != expected:
        raise IntegrityError(f"{what}: received {got} bytes, expected {expected}; the download was cut short.")
    return got
