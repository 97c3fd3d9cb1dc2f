"""One HTTP(S) GET, read chunk by chunk from synchronous code, with timeouts and checked redirects.

aiohttp runs on fsspec's I/O event loop (the thread fsspec's own HTTP and GCS filesystems use),
so this works the same from scripts, notebooks that run an event loop of their own, and worker
threads. Redirects are followed here, not inside aiohttp, so every hop is checked: only
http(s) locations, no loops, at most ``max_redirects`` hops.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp
import fsspec.asyn

from beam_hub import settings
from beam_hub.errors import DownloadError

MAX_REDIRECTS = 10
_PRIVATE_HEADERS = ("authorization", "cookie", "proxy-authorization")
_REDIRECTS = (301, 302, 303, 307, 308)


def client_timeout() -> aiohttp.ClientTimeout:
    """Connect and read timeouts from the settings (no total: big modules take as long as they take)."""
    connect = settings.connect_timeout()
    return aiohttp.ClientTimeout(
        total=None, connect=connect, sock_connect=connect, sock_read=settings.read_timeout()
    )


class HttpResponse:
    """An open response: ``status``, ``headers``, the final ``url``; ``read(n)`` until b""; ``close()``."""

    def __init__(
        self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse, chain: list[str]
    ) -> None:
        self._session = session
        self._response = response
        self._loop = fsspec.asyn.get_loop()
        self.status: int = response.status
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self.url: str = str(response.url)
        self.redirects: list[str] = chain  # every URL asked for, the first one included

    def read(self, n: int = 1 << 20) -> bytes:
        """Up to ``n`` bytes (fewer when fewer have arrived); b"" at the end of the body."""
        return fsspec.asyn.sync(self._loop, self._response.content.read, n)

    def close(self) -> None:
        fsspec.asyn.sync(self._loop, _close, self._session, self._response)

    def __enter__(self) -> HttpResponse:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


async def _close(session: aiohttp.ClientSession, response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.release()
    await session.close()


async def _open(url: str, headers: Mapping[str, str], follow: bool, max_redirects: int) -> HttpResponse:
    session = aiohttp.ClientSession(timeout=client_timeout())
    response = None
    chain = [url]
    origin = _origin(url)
    try:
        while True:
            # credentials and cookies go to the first URL's origin only, never to a host it redirects to
            sent = (
                headers
                if _origin(url) == origin
                else {k: v for k, v in headers.items() if k.lower() not in _PRIVATE_HEADERS}
            )
            response = await session.get(url, headers=dict(sent), allow_redirects=False)
            location = response.headers.get("Location")
            if not (follow and response.status in _REDIRECTS and location):
                return HttpResponse(session, response, chain)
            response.release()
            url = _next_hop(chain, location)
            chain.append(url)
            if len(chain) > max_redirects + 1:
                raise DownloadError(
                    f"{chain[0]} redirected more than {max_redirects} times ({' -> '.join(chain[:4])} -> ...). "
                    "The server is misconfigured; check the URL."
                )
    except BaseException:
        await _close(session, response)
        raise


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _next_hop(chain: list[str], location: str) -> str:
    """The absolute URL a redirect names, refused unless http(s) and new in this chain."""
    target = urllib.parse.urljoin(chain[-1], location.strip())
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(
            f"{chain[-1]} redirected to {target!r}: only http(s) redirects are followed (a server may not "
            "send a download to a local file or another protocol). Check the URL."
        )
    if target in chain:
        raise DownloadError(f"Redirect loop: {' -> '.join([*chain, target])}. The server is misconfigured.")
    return target


def open_url(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    follow_redirects: bool = True,
    max_redirects: int = MAX_REDIRECTS,
) -> HttpResponse:
    """GET ``url`` and return the open response once its headers arrived (any status).

    Connection errors and timeouts raise aiohttp's / asyncio's exceptions; a bad redirect raises
    DownloadError naming the hops.
    """
    return fsspec.asyn.sync(
        fsspec.asyn.get_loop(), _open, url, headers or {}, follow_redirects, max_redirects
    )
