"""A proxy in front of the GCS emulator on 127.0.0.1 that can misbehave the way GCS and networks do.

``proxy.fault = fn`` where ``fn(method, path, query) -> action or None`` decides per request:
  None                    forward it
  "stall"                 read the request, never answer (until the proxy stops)
  "apply-then-503"        forward it (GCS applies it), then answer 503 instead of GCS's answer
  "apply-then-drop"       forward it, then close the connection without an answer
  ("status", code)        answer ``code`` with a GCS-style JSON error, without forwarding
Point a process at it with STORAGE_EMULATOR_HOST=proxy.url.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any


class GcsProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.split("//", 1)[-1]
        self.fault: Callable[[str, str, dict[str, str]], Any] = lambda method, path, query: None
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.stopping = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, action: Any) -> int:
        return sum(1 for *_, a in self.requests if a == action)

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        action = self.fault(h.command, parts.path, query)
        self.requests.append((h.command, parts.path, query, action))
        if action == "stall":
            self.stopping.wait(120)
            h.close_connection = True
            return
        if isinstance(action, tuple) and action[0] == "status":
            data = json.dumps(
                {"error": {"code": action[1], "message": "injected by the test proxy"}}
            ).encode()
            return self._send(h, action[1], {"Content-Type": "application/json"}, data)
        status, headers, data = self._forward(h, body)
        if action == "apply-then-drop":
            h.close_connection = True
            return
        if action == "apply-then-503":
            data = json.dumps({"error": {"code": 503, "message": "backend error (injected)"}}).encode()
            return self._send(h, 503, {"Content-Type": "application/json"}, data)
        self._send(h, status, headers, data)

    def _forward(self, h: http.server.BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        conn.request(
            h.command, h.path, body=body, headers={k: v for k, v in h.headers.items() if k.lower() != "host"}
        )
        resp = conn.getresponse()
        data = resp.read()
        headers = {
            k: v
            for k, v in resp.getheaders()
            if k.lower() not in ("transfer-encoding", "connection", "content-length")
        }
        conn.close()
        return resp.status, headers, data

    @staticmethod
    def _send(h: http.server.BaseHTTPRequestHandler, status: int, headers: dict, data: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
