"""A real HTTP server on 127.0.0.1 speaking the TF Hub hosting protocol, with fault modes.

Routes are registered per test. A "module" route answers ``?tf-hub-format=compressed`` with its
archive and anything else with an HTML page, as tfhub.dev does. Modes:
  ok        the body, with Content-Length
  fail      answer ``statuses`` first (e.g. [500, 503]), then the body
  truncate  Content-Length of the whole body, then half of it, then close
  stall     half of the body, then silence until the server stops (or 60 s)
  html      200 with an HTML page instead of an archive
  slow      the body in small chunks with pauses (to make downloads overlap)
  break     the first GET sends half the body and closes; later GETs honour Range (206)
  norange   like break, but Range is ignored: later GETs send the whole body (200)
  redirect  answer ``statuses[0]`` (e.g. 302) with ``Location: <location>``, for every GET
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = b"<!DOCTYPE html><html><head><title>Module</title></head><body>Documentation page</body></html>"


@dataclass
class Route:
    body: bytes
    mode: str = "ok"
    statuses: list[int] = field(default_factory=list)
    protocol: bool = True  # demand ?tf-hub-format=compressed
    gets: int = 0
    etag: str | None = None
    location: str | None = None


class HubServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.headers: list[dict] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(
        self,
        path: str,
        body: bytes,
        mode: str = "ok",
        statuses: list[int] | None = None,
        protocol: bool | None = None,
        location: str | None = None,
    ) -> str:
        if protocol is None:
            protocol = not path.endswith((".tar.gz", ".tgz", ".tar"))
        self.routes[path] = Route(body, mode, list(statuses or []), protocol, location=location)
        return self.url + path

    def gets(self, path: str) -> int:
        return self.routes[path].gets

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.requests.append(("GET", parts.path, query))
            self.headers.append(dict(h.headers))
            route = self.routes.get(parts.path)
        if route is None:
            return self._send(h, 404, b"not found", "text/plain")
        if route.mode == "redirect":
            with self._lock:
                route.gets += 1
            h.send_response(route.statuses[0])
            h.send_header("Location", route.location or "")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if route.protocol and query.get("tf-hub-format") != "compressed":
            return self._send(h, 200, HTML, "text/html")
        with self._lock:
            route.gets += 1
            status = route.statuses.pop(0) if route.mode == "fail" and route.statuses else 200
        if status != 200:
            return self._send(h, status, b"server error", "text/plain")
        body = route.body
        if route.mode == "html":
            return self._send(h, 200, HTML, "text/html")
        if route.mode in ("break", "norange"):
            wanted = h.headers.get("Range")
            if route.gets == 1:  # the first transfer breaks half-way
                return self._send_partial(h, body, len(body) // 2)
            if wanted and route.mode == "break":
                start = int(wanted.split("=")[1].split("-")[0])
                h.send_response(206)
                h.send_header("Content-Type", "application/x-gzip")
                h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                h.send_header("Content-Length", str(len(body) - start))
                h.end_headers()
                h.wfile.write(body[start:])
                return
            return self._send(h, 200, body, "application/x-gzip")
        if route.mode in ("truncate", "stall"):
            h.send_response(200)
            h.send_header("Content-Type", "application/x-gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            if route.mode == "stall":
                self.stopping.wait(60)
            h.close_connection = True
            return
        if route.mode == "slow":
            h.send_response(200)
            h.send_header("Content-Type", "application/x-gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            step = max(1, len(body) // 20)
            for i in range(0, len(body), step):
                h.wfile.write(body[i : i + step])
                h.wfile.flush()
                time.sleep(0.05)
            return
        self._send(h, 200, body, "application/x-gzip", route.etag)

    @staticmethod
    def _send_partial(h: BaseHTTPRequestHandler, body: bytes, n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-gzip")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        h.wfile.write(body[:n])
        h.wfile.flush()
        time.sleep(0.3)  # let the client take in what arrived before the connection drops
        h.close_connection = True

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, etag: str | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        if etag:
            h.send_header("ETag", etag)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
