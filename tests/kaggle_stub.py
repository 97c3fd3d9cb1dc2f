"""Local stand-ins for Kaggle Models and the signed storage it redirects to, on 127.0.0.1.

``KaggleStub`` answers ``/models/O/M/frameworks/F/variations/V/versions/N?tf-hub-format=compressed``
with a 302 to a freshly signed ``SignedStorage`` URL, as www.kaggle.com does. ``SignedStorage``
serves blobs only under a live signature, honours Range, can break a transfer half-way, and
answers 403 (GCS's ExpiredToken) once a signature has expired. Both record every request's
headers, so tests can check where credentials went.
"""

from __future__ import annotations

import itertools
import time

from stub_server import StubServer

EXPIRED = b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"


class SignedStorage(StubServer):
    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.live: set[str] = set()
        self.break_next = 0  # break this many transfers half-way (and expire their signature)
        self.expire_on_use = False  # every signature serves one request only
        self._signatures = itertools.count(1)

    def sign(self, name: str) -> str:
        signature = f"sig{next(self._signatures)}"
        self.live.add(signature)
        return f"{self.url}/blob/{name}?X-Goog-Signature={signature}&X-Goog-Expires=259200"

    def handle(self, h, path, query):
        name = path.removeprefix("/blob/")
        signature = query.get("X-Goog-Signature", "")
        if name not in self.blobs:
            return self.send(h, 404, b"no such blob")
        if signature not in self.live:
            return self.send(h, 403, EXPIRED, {"Content-Type": "application/xml"})
        if self.expire_on_use:
            self.live.discard(signature)
        body = self.blobs[name]
        start = int(h.headers["Range"].split("=")[1].split("-")[0]) if h.headers.get("Range") else 0
        if self.break_next:
            self.break_next -= 1
            self.live.discard(signature)  # the signature expires while the transfer is broken
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.send_header("ETag", '"blob-etag"')
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            time.sleep(0.3)  # let the client take in what arrived before the connection drops
            h.close_connection = True
            return
        headers = {"ETag": '"blob-etag"', "Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return self.send(h, 206, body[start:], headers)
        self.send(h, 200, body, headers)


class KaggleStub(StubServer):
    def __init__(self, storage: SignedStorage) -> None:
        super().__init__()
        self.storage = storage
        self.models: dict[str, str] = {}  # "/models/o/m/frameworks/f/variations/v/versions/n" -> blob name
        self.require: str | None = None  # an Authorization value the model needs (a private model)

    def add(
        self, owner: str, model: str, framework: str, variation: str, version: int, archive: bytes
    ) -> str:
        path = f"/models/{owner}/{model}/frameworks/{framework}/variations/{variation}/versions/{version}"
        name = f"{owner}-{model}-{variation}-{version}.tar.gz"
        self.models[path.lower()] = name
        self.storage.blobs[name] = archive
        return path

    def handle(self, h, path, query):
        name = self.models.get(path.lower())
        if name is None:
            return self.send(h, 404, b"Not found")
        if self.require is not None and h.headers.get("Authorization") != self.require:
            return self.send(h, 403, b"Permission denied")
        if query.get("tf-hub-format") != "compressed":
            return self.send(h, 200, b"<html>model page</html>", {"Content-Type": "text/html"})
        self.send(h, 302, b"", {"Location": self.storage.sign(name)})

    def calls(self) -> list[tuple[str, dict[str, str], dict[str, str]]]:
        return [r for r in self.requests if r[1].get("tf-hub-format") == "compressed"]
