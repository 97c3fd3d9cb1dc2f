"""Streaming downloads through fsspec: to disk, with timeouts, retries and a size check."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from typing import Callable

import fsspec

from beam_hub import settings
from beam_hub.errors import BeamHubError, DownloadError, ModuleNotFoundAtHandleError, TruncatedDownloadError
from beam_hub.progress import download_callback
from beam_hub.sinks import FileSink, Sink, SinkFailed

log = logging.getLogger(__name__)

_HTTP = ("http", "https")
_CHUNK = 1 << 20


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
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError, TruncatedDownloadError))


def download(url: str, dest: str, *, what: str | None = None, storage_options: dict | None = None) -> int:
    """Stream ``url`` (any fsspec URL) into the local file ``dest``; return the byte count."""
    sink = stream(url, lambda: FileSink(dest), what=what, storage_options=storage_options)
    return sink.received  # type: ignore[attr-defined]


def stream(url: str, open_sink: Callable[[], Sink], *, what: str | None = None,
           storage_options: dict | None = None) -> Sink:
    """Stream the body of ``url`` (any fsspec URL) into a fresh sink per attempt; return the sink
    that received it whole.

    HTTP(S) gets connect/read timeouts and retries with exponential backoff on connection errors,
    timeouts, truncated bodies and 5xx answers (not on 4xx). The body length is checked against
    Content-Length (or the object's listed size). Never holds the whole body in memory.
    """
    what = what or url
    protocol = fsspec.utils.get_protocol(url)
    http = protocol in _HTTP
    if http:
        fs, path = http_filesystem(), url
        attempts = 1 + max(0, settings.download_retries())
    else:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        attempts = 1  # backends such as gcsfs retry on their own
    for attempt in range(1, attempts + 1):
        sink = _CountingSink(open_sink())
        try:
            _transfer(fs, path, sink, what, http)
            sink.finish()
            return sink
        except SinkFailed as e:
            sink.abort()
            raise e.error from None
        except FileNotFoundError as e:
            sink.abort()
            raise ModuleNotFoundAtHandleError(
                f"Nothing found at {what} ({e}). Check the handle's spelling and version."
            ) from e
        except Exception as e:  # noqa: BLE001 - classified below
            sink.abort()
            if http and not _retryable(e):
                status = getattr(e, "status", None)
                if status is None:
                    raise
                raise DownloadError(
                    f"Downloading {what} failed with HTTP {status}: {getattr(e, 'message', e)}. "
                    + ("Check access rights or credentials for this URL." if status in (401, 403) else
                       "This is a client error; retrying will not help. Check the URL.")
                ) from e
            if not http or attempt == attempts:
                if isinstance(e, BeamHubError):
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


class _CountingSink:
    """Counts bytes and looks like a writable file to fsspec's get_file."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.received = 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.received += len(data)
        return len(data)

    def read(self, *_args):  # fsspec.utils.isfilelike wants read/tell/close
        raise io.UnsupportedOperation("write-only")

    def tell(self) -> int:
        return self.received

    def close(self) -> None:
        pass

    def finish(self) -> None:
        self.sink.finish()

    def abort(self) -> None:
        try:
            self.sink.abort()
        except Exception:  # noqa: BLE001 - the original error matters more
            log.debug("sink abort failed", exc_info=True)


def _transfer(fs: fsspec.AbstractFileSystem, path: str, sink: _CountingSink, what: str, http: bool) -> None:
    callback = download_callback(what)
    try:
        if http:
            # a streaming GET (no HEAD first); Content-Length reaches the callback
            fs.get_file(path, sink, callback=callback, chunk_size=_CHUNK)
            expected = callback.size
        else:
            with fs.open(path, "rb", block_size=_CHUNK) as f:
                expected = getattr(f, "size", None)
                callback.set_size(expected)
                while chunk := f.read(_CHUNK):
                    sink.write(chunk)
                    callback.relative_update(len(chunk))
    finally:
        callback.close()
    if expected is not None and sink.received != expected:
        raise TruncatedDownloadError(
            f"{what}: received {sink.received} bytes, expected {expected}; the download was cut short."
        )
