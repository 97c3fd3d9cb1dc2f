"""Streaming downloads through fsspec: timeouts, retries, resuming with Range, a length check."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import fsspec

from beam_hub import settings
from beam_hub.errors import BeamHubError, DownloadError, ModuleNotFoundAtHandleError, TruncatedDownloadError
from beam_hub.progress import download_callback
from beam_hub.sinks import Sink, SinkFailed

log = logging.getLogger(__name__)

_HTTP = ("http", "https")
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SHA256_ETAG = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{64})"?$')


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
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError,
                            TruncatedDownloadError))


@dataclass
class Received:
    """What a download delivered: the sink that got the whole body, and the server's sha256 if it
    announced one (an ETag that is a sha256, as `beam-hub serve` sends)."""

    sink: Sink
    size: int
    etag_sha256: str | None = None
    resumed: int = 0  # how many times a broken transfer went on with a Range request


class _Counting:
    """Counts the bytes a sink receives."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.received = 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.received += len(data)
        return len(data)

    def abort(self) -> None:
        try:
            self.sink.abort()
        except Exception:  # noqa: BLE001 - the original error matters more
            log.debug("sink abort failed", exc_info=True)


def _not_found(what: str, error: FileNotFoundError) -> ModuleNotFoundAtHandleError:
    return ModuleNotFoundAtHandleError(f"Nothing found at {what} ({error}). Check the handle's spelling and version.")


def stream(url: str, open_sink: Callable[[], Sink], *, what: str | None = None,
           storage_options: dict | None = None) -> Received:
    """Stream the body of ``url`` (any fsspec URL) into a sink; return what was received.

    HTTP(S): connect/read timeouts; retries with exponential backoff on connection errors,
    timeouts, truncated bodies and 5xx (not 4xx); a transfer broken after some bytes goes on with a
    ``Range`` request (``If-Range`` on the ETag) where the server allows it, else starts again in a
    fresh sink. The length is checked against Content-Length (Content-Range), or for other
    filesystems against the object's listed size. Never holds the whole body in memory.
    """
    what = what or url
    if fsspec.utils.get_protocol(url) not in _HTTP:
        return _stream_fsspec(url, open_sink, what, storage_options or {})
    fs = http_filesystem()
    attempts = 1 + max(0, settings.download_retries())
    counting = _Counting(open_sink())
    state: dict[str, Any] = {"etag": None, "total": None, "resumed": 0}
    for attempt in range(1, attempts + 1):
        try:
            counting = _http_attempt(fs, url, counting, open_sink, state, what)
            counting.sink.finish()
            match = _SHA256_ETAG.match(state["etag"] or "")
            return Received(counting.sink, counting.received, match.group(1).lower() if match else None,
                            state["resumed"])
        except SinkFailed as e:
            counting.abort()
            raise e.error from None
        except FileNotFoundError as e:
            counting.abort()
            raise _not_found(what, e) from e
        except Exception as e:  # noqa: BLE001 - classified below
            if not _retryable(e):
                counting.abort()
                status = getattr(e, "status", None)
                if status is None:
                    raise
                raise DownloadError(
                    f"Downloading {what} failed with HTTP {status}: {getattr(e, 'message', e)}. "
                    + ("Check access rights or credentials for this URL." if status in (401, 403) else
                       "This is a client error; retrying will not help. Check the URL.")
                ) from e
            if attempt == attempts:
                counting.abort()
                if isinstance(e, BeamHubError):
                    raise
                raise DownloadError(
                    f"Downloading {what} failed after {attempt} attempt(s): {type(e).__name__}: {e}. "
                    "Check the network and the server; BEAM_HUB_DOWNLOAD_RETRIES and "
                    "BEAM_HUB_READ_TIMEOUT tune retries and timeouts."
                ) from e
            delay = min(30.0, settings.retry_backoff() * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning("Download of %s broke after %d bytes (%s: %s); retry %d/%d in %.1fs",
                        what, counting.received, type(e).__name__, e, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _http_attempt(fs: Any, url: str, counting: _Counting, open_sink: Callable[[], Sink],
                  state: dict[str, Any], what: str) -> _Counting:
    headers = {}
    if counting.received:
        headers["Range"] = f"bytes={counting.received}-"
        if state["etag"]:
            headers["If-Range"] = state["etag"]
    # size= skips fsspec's HEAD request; block_size=0 gives a streaming GET
    f = fs.open(url, "rb", block_size=0, size=1, headers=headers)
    try:
        status, resp_headers = f.r.status, f.r.headers
        if counting.received:
            ranged = _CONTENT_RANGE.match(resp_headers.get("Content-Range", ""))
            if status == 206 and ranged and int(ranged.group(1)) == counting.received:
                state["resumed"] += 1
                log.info("Resuming %s at byte %d", what, counting.received)
            else:  # the server ignored the range or the content changed: start again
                log.info("Restarting %s from the beginning (no usable Range answer, HTTP %d)", what, status)
                counting.abort()
                counting = _Counting(open_sink())
        if counting.received == 0:
            state["etag"] = resp_headers.get("ETag")
            length = resp_headers.get("Content-Length")
            state["total"] = int(length) if length is not None and status == 200 else None
        callback = download_callback(what)
        callback.set_size(state["total"])
        callback.relative_update(counting.received)
        try:
            while chunk := f.read(_CHUNK):
                counting.write(chunk)
                callback.relative_update(len(chunk))
        finally:
            callback.close()
    finally:
        f.close()
    if state["total"] is not None and counting.received != state["total"]:
        raise TruncatedDownloadError(f"{what}: received {counting.received} bytes, expected {state['total']}.")
    return counting


def _stream_fsspec(url: str, open_sink: Callable[[], Sink], what: str, storage_options: dict) -> Received:
    """Any other fsspec URL: one streamed read (backends such as gcsfs retry on their own)."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    counting = _Counting(open_sink())
    callback = download_callback(what)
    try:
        with fs.open(path, "rb", block_size=_CHUNK) as f:
            expected = getattr(f, "size", None)
            callback.set_size(expected)
            while chunk := f.read(_CHUNK):
                counting.write(chunk)
                callback.relative_update(len(chunk))
        if expected is not None and counting.received != expected:
            raise TruncatedDownloadError(f"{what}: received {counting.received} bytes, expected {expected}.")
        counting.sink.finish()
    except SinkFailed as e:
        counting.abort()
        raise e.error from None
    except FileNotFoundError as e:
        counting.abort()
        raise _not_found(what, e) from e
    except BaseException:
        counting.abort()
        raise
    finally:
        callback.close()
    return Received(counting.sink, counting.received)


def uncompressed_location(url: str) -> str | None:
    """Ask ``url`` for ``tf-hub-format=uncompressed``: the location a 303 answer names in its body,
    or None when the server offers no uncompressed format."""
    from beam_hub.handles import with_format_query

    fs = http_filesystem()
    try:
        f = fs.open(with_format_query(url, "uncompressed"), "rb", block_size=0, size=1, allow_redirects=False)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - 4xx/5xx: no uncompressed format here
        if getattr(e, "status", None):
            return None
        raise DownloadError(f"Asking {url} for the uncompressed format failed: {type(e).__name__}: {e}") from e
    try:
        if f.r.status != 303:
            return None
        body = f.read().decode("utf-8", "replace").strip()
    finally:
        f.close()
    return body or f.r.headers.get("Location")
