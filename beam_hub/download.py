"""Streaming downloads: timeouts, retries, resuming with Range, a length check.

http(s) goes through :mod:`beam_hub.http_stream` (aiohttp, checked redirects); every other
protocol through fsspec (gcsfs, s3fs, ... retry on their own).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import fsspec

from beam_hub import settings
from beam_hub.errors import (
    BeamHubError,
    DownloadError,
    HttpStatusError,
    ModuleNotFoundAtHandleError,
    TruncatedDownloadError,
)
from beam_hub.progress import download_callback
from beam_hub.sinks import Sink, SinkFailed

if TYPE_CHECKING:
    from beam_hub.http_stream import HttpResponse

log = logging.getLogger(__name__)

_HTTP = ("http", "https")
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SHA256_ETAG = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{64})"?$')
_MAX_LOCATION_BYTES = 64 << 10


def timeout_options(url: str) -> dict[str, Any]:
    """fsspec options giving ``url``'s file system per-request connect and read timeouts
    (BEAM_HUB_CONNECT_TIMEOUT, BEAM_HUB_READ_TIMEOUT) where it takes them (gcsfs)."""
    if fsspec.utils.get_protocol(url) in ("gs", "gcs"):
        import aiohttp

        connect, read = settings.connect_timeout(), settings.read_timeout()
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)
        return {"requests_timeout": timeout}
    return {}


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs(url)`` with the connect and read timeouts of :func:`timeout_options`:
    how every file system beam-hub talks to over the network is opened."""
    return fsspec.core.url_to_fs(url, **timeout_options(url))


def _retryable(exc: BaseException) -> bool:
    """Connection problems, timeouts, truncated bodies and 5xx are worth another try; 4xx not."""
    import aiohttp

    if isinstance(exc, HttpStatusError):
        expired = exc.redirected and exc.status in (400, 401, 403)  # a signed URL that expired: ask again
        return exc.status >= 500 or exc.status in (408, 429) or expired
    return isinstance(
        exc,
        (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError, TruncatedDownloadError),
    )


SinkT = TypeVar("SinkT", bound=Sink)


@dataclass
class Received(Generic[SinkT]):
    """What a download delivered: the sink that got the whole body, and the server's sha256 if it
    announced one (an ETag that is a sha256, as `beam-hub serve` sends)."""

    sink: SinkT
    size: int
    etag_sha256: str | None = None
    resumed: int = 0  # how many times a broken transfer went on with a Range request


@dataclass
class _Transfer:
    """One download across its attempts: where the bytes go and what the server promised."""

    sink: Sink
    received: int = 0
    etag: str | None = None
    total: int | None = None  # Content-Length of the whole body, when the server sent one
    resumed: int = 0

    def write(self, data: bytes) -> None:
        self.sink.write(data)
        self.received += len(data)

    def restart(self, open_sink: Callable[[], Sink]) -> None:
        """Throw away what arrived and start again in a fresh sink."""
        self.abort()
        self.sink = open_sink()
        self.received = 0

    def abort(self) -> None:
        try:
            self.sink.abort()
        except Exception:
            log.debug("sink abort failed", exc_info=True)

    def result(self) -> Received:
        match = _SHA256_ETAG.match(self.etag or "")
        return Received(self.sink, self.received, match.group(1).lower() if match else None, self.resumed)


def _not_found(what: str, error: BaseException) -> ModuleNotFoundAtHandleError:
    return ModuleNotFoundAtHandleError(
        f"Nothing found at {what} ({error}). Check the handle's spelling and version."
    )


def stream(
    url: str,
    open_sink: Callable[[], SinkT],
    *,
    what: str | None = None,
    storage_options: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Received[SinkT]:
    """Stream the body of ``url`` (any fsspec URL) into a sink; return what was received.

    HTTP(S): connect/read timeouts; retries with exponential backoff on connection errors,
    timeouts, truncated bodies and 5xx (not 4xx); a transfer broken after some bytes goes on with a
    ``Range`` request (``If-Range`` on the ETag) where the server allows it, else starts again in a
    fresh sink. Every attempt starts at ``url``, so a redirect to a signed storage URL is asked
    for again: an expired one (400/401/403 from the host redirected to) is retried like a 5xx.
    ``headers`` (e.g. credentials) go to ``url``'s origin only, never to a host it redirects to.
    The length is checked against Content-Length (Content-Range), or for other filesystems
    against the object's listed size. Never holds the whole body in memory.
    """
    what = what or url
    if fsspec.utils.get_protocol(url) not in _HTTP:
        return _stream_fsspec(url, open_sink, what, storage_options or {})
    attempts = 1 + max(0, settings.download_retries())
    transfer = _Transfer(open_sink())
    for attempt in range(1, attempts + 1):
        try:
            _http_attempt(url, transfer, open_sink, what, headers or {})
            transfer.sink.finish()
            return transfer.result()
        except SinkFailed as e:
            transfer.abort()
            raise e.error from None
        except Exception as e:
            if isinstance(e, HttpStatusError) and e.status == 404:
                transfer.abort()
                raise _not_found(what, e) from None
            if not _retryable(e):
                transfer.abort()
                if isinstance(e, HttpStatusError):
                    raise DownloadError(
                        f"Downloading {what} failed with {e}. "
                        + (
                            "Check access rights or credentials for this URL."
                            if e.status in (401, 403)
                            else "This is a client error; retrying will not help. Check the URL."
                        )
                    ) from None
                raise
            if attempt == attempts:
                transfer.abort()
                if isinstance(e, BeamHubError):
                    raise
                raise DownloadError(
                    f"Downloading {what} failed after {attempt} attempt(s): {type(e).__name__}: {e}. "
                    "Check the network and the server; BEAM_HUB_DOWNLOAD_RETRIES and "
                    "BEAM_HUB_READ_TIMEOUT tune retries and timeouts."
                ) from e
            delay = min(30.0, settings.retry_backoff() * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning(
                "Download of %s broke after %d bytes (%s: %s); retry %d/%d in %.1fs",
                what,
                transfer.received,
                type(e).__name__,
                e,
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _http_attempt(
    url: str, transfer: _Transfer, open_sink: Callable[[], Sink], what: str, extra: dict[str, str]
) -> None:
    headers = dict(extra)
    if transfer.received:
        headers["Range"] = f"bytes={transfer.received}-"
        if transfer.etag:
            headers["If-Range"] = transfer.etag
    from beam_hub.http_stream import open_url  # aiohttp: imported on the first download only

    with open_url(url, headers=headers) as response:
        if response.status >= 400:
            raise HttpStatusError(
                response.url, response.status, response.reason, redirected=len(response.redirects) > 1
            )
        if transfer.received:
            _continue_or_restart(response, transfer, open_sink, what)
        if transfer.received == 0:
            transfer.etag = response.headers.get("ETag")
            length = response.headers.get("Content-Length")
            transfer.total = int(length) if length and length.isdigit() and response.status == 200 else None
        _copy_body(response, transfer, what)
    if transfer.total is not None and transfer.received != transfer.total:
        raise TruncatedDownloadError(
            f"{what}: received {transfer.received} bytes, expected {transfer.total}."
        )


def _continue_or_restart(
    response: HttpResponse, transfer: _Transfer, open_sink: Callable[[], Sink], what: str
) -> None:
    ranged = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status == 206 and ranged and int(ranged.group(1)) == transfer.received:
        transfer.resumed += 1
        log.info("Resuming %s at byte %d", what, transfer.received)
    else:  # the server ignored the range or the content changed: start again
        log.info("Restarting %s from the beginning (no usable Range answer, HTTP %d)", what, response.status)
        transfer.restart(open_sink)


def _copy_body(response: HttpResponse, transfer: _Transfer, what: str) -> None:
    callback = download_callback(what)
    callback.set_size(transfer.total)
    callback.relative_update(transfer.received)
    try:
        while chunk := response.read(_CHUNK):
            transfer.write(chunk)
            callback.relative_update(len(chunk))
    finally:
        callback.close()


def _stream_fsspec(url: str, open_sink: Callable[[], Sink], what: str, storage_options: dict) -> Received:
    """Any other fsspec URL: one streamed read (backends such as gcsfs retry on their own)."""
    fs, path = fsspec.core.url_to_fs(url, **{**timeout_options(url), **storage_options})
    transfer = _Transfer(open_sink())
    callback = download_callback(what)
    try:
        with fs.open(path, "rb", block_size=_CHUNK) as f:
            expected = getattr(f, "size", None)
            callback.set_size(expected)
            while chunk := f.read(_CHUNK):
                transfer.write(chunk)
                callback.relative_update(len(chunk))
        if expected is not None and transfer.received != expected:
            raise TruncatedDownloadError(f"{what}: received {transfer.received} bytes, expected {expected}.")
        transfer.sink.finish()
    except SinkFailed as e:
        transfer.abort()
        raise e.error from None
    except FileNotFoundError as e:
        transfer.abort()
        raise _not_found(what, e) from e
    except BaseException:
        transfer.abort()
        raise
    finally:
        callback.close()
    return Received(transfer.sink, transfer.received)


def uncompressed_location(url: str) -> str | None:
    """Ask ``url`` for ``tf-hub-format=uncompressed``: the location a 303 answer names in its body
    (else its Location header), or None when the server offers no uncompressed format."""
    from beam_hub.handles import with_format_query

    asked = with_format_query(url, "uncompressed")
    try:
        from beam_hub.http_stream import open_url

        response = open_url(asked, follow_redirects=False)
    except BeamHubError:
        raise
    except Exception as e:
        raise DownloadError(
            f"Asking {url} for the uncompressed format failed: {type(e).__name__}: {e}"
        ) from e
    with response:
        if response.status != 303:
            return None
        body = response.read(_MAX_LOCATION_BYTES).decode("utf-8", "replace").strip()
    return body or response.headers.get("Location")
