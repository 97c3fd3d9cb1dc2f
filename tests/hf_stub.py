"""A local stand-in for the Hugging Face Hub endpoints HfFileSystem calls, on 127.0.0.1.

    GET /api/models/ORG/NAME/revision/REV          repo_info: {"id", "sha", "siblings"}
    GET /api/models/ORG/NAME/tree/REV[/PATH]       list_repo_tree (recursive=, paginated by a Link header)
    GET /ORG/NAME/resolve/REV/PATH                  the file (LFS files: a 302 to ``BlobStorage``)

Errors carry the Hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo),
so huggingface_hub raises its own exceptions. Every request's headers are recorded, so tests can
see where a token went; knobs let tests tamper with listings and files, stall requests and
measure how many downloads overlap.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from stub_server import StubServer

LFS_OVER = 512  # files larger than this are stored in LFS (listed with a sha256, served by redirect)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_tree(directory: str, prefix: str = "") -> dict[str, bytes]:
    """Every file under ``directory`` as {prefix + relative POSIX path: bytes}."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[prefix + rel] = f.read()
    return out


@dataclass
class Repo:
    id: str
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> {path: bytes}
    private: bool = False
    gated: bool = False

    def push(self, files: dict[str, bytes], ref: str = "main") -> str:
        """Record a commit holding ``files`` and point ``ref`` at it; returns the commit id."""
        digest = hashlib.sha1(json.dumps(sorted((k, git_blob_id(v)) for k, v in files.items())).encode())
        digest.update(str(len(self.commits)).encode())
        commit = digest.hexdigest()
        self.commits[commit] = dict(files)
        self.refs[ref] = commit
        return commit

    def commit_of(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class BlobStorage(StubServer):
    """The storage host LFS files redirect to (as the Hub's CDN)."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}

    def handle(self, h, path, query):
        body = self.blobs.get(path.removeprefix("/"))
        if body is None:
            return self.send(h, 404, b"no such blob")
        self.send(h, 200, body, {"Content-Type": "application/octet-stream"})


class HubStub(StubServer):
    def __init__(self, storage: BlobStorage | None = None) -> None:
        super().__init__()
        self.storage = storage
        self.repos: dict[str, Repo] = {}
        self.token: str | None = None  # the token private and gated repos need
        self.page_size = 1000
        self.stall_tree = 0  # hold this many tree requests without an answer
        self.released = threading.Event()  # set by stop(): stalled requests end
        self.abandoned = 0  # stalled requests the client gave up on (it closed the connection)
        self.extra_entries: list[dict] = []  # injected into every tree listing
        self.listed_sizes: dict[str, int] = {}  # path -> size the listing claims instead
        self.tamper: dict[str, bytes] = {}  # path -> bytes served instead of the real ones
        self.file_delay = 0.0  # seconds each file download takes before its first byte
        self._active = 0
        self.max_parallel = 0
        self._count_lock = threading.Lock()

    def stop(self) -> None:
        self.released.set()
        super().stop()

    def add(self, repo_id: str, **kwargs) -> Repo:
        repo = Repo(repo_id, **kwargs)
        self.repos[repo_id.lower()] = repo
        return repo

    def file_requests(self) -> list[str]:
        return [p for p, _, _ in self.requests if "/resolve/" in p]

    def api_requests(self) -> list[str]:
        return [p for p, _, _ in self.requests if p.startswith("/api/")]

    # -- dispatch ------------------------------------------------------------

    def handle(self, h, path, query):
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) == 4:  # repo_info of the default branch
            parts += ["revision", "main"]
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo, action, revision, rest = self._repo(h, parts[2:4]), parts[4], parts[5], parts[6:]
            if repo is None:
                return None
            commit = repo.commit_of(revision)
            if commit is None:
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if action == "revision":
                siblings = [{"rfilename": name} for name in sorted(repo.commits[commit])]
                return self._json(
                    h, {"id": repo.id, "sha": commit, "private": repo.private, "siblings": siblings}
                )
            if action == "tree":
                return self._tree(h, repo, commit, "/".join(rest), query)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(h, parts[:2])
            if repo is None:
                return None
            commit = repo.commit_of(parts[3])
            if commit is None:
                return self._error(h, 404, "RevisionNotFound", "Invalid rev id")
            return self._file(h, repo, commit, "/".join(parts[4:]))
        return self.send(h, 404, b"not found")

    def _repo(self, h, id_parts: list[str]) -> Repo | None:
        repo = self.repos.get("/".join(id_parts).lower())
        authorized = self.token is not None and h.headers.get("Authorization") == f"Bearer {self.token}"
        if repo is None or (repo.private and not authorized):
            self._error(h, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and not authorized:
            self._error(h, 403, "GatedRepo", "Access to this model is restricted")
            return None
        return repo

    # -- endpoints -----------------------------------------------------------

    def _tree(self, h, repo: Repo, commit: str, path: str, query: dict[str, str]) -> None:
        if self.stall_tree:
            self.stall_tree -= 1
            self._hold(h)  # no answer: the client's read timeout has to give up first
            h.close_connection = True
            return None
        files = repo.commits[commit]
        prefix = path + "/" if path else ""
        if path and not any(f.startswith(prefix) for f in files):
            return self._error(h, 404, "EntryNotFound", f"{path} does not exist")
        recursive = query.get("recursive", "").lower() == "true"
        entries, dirs = [], set()
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            segments = rest.split("/")
            for depth in range(1, len(segments)):
                d = prefix + "/".join(segments[:depth])
                if (recursive or depth == 1) and d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
            if recursive or len(segments) == 1:
                entries.append(self._entry(name, files[name]))
        entries.extend(self.extra_entries)
        start = int(query.get("cursor", "0"))
        page = entries[start : start + self.page_size]
        headers = {"Content-Type": "application/json"}
        if start + self.page_size < len(entries):
            params = urllib.parse.urlencode({**query, "cursor": start + self.page_size})
            base = h.path.split("?", 1)[0]
            headers["Link"] = f'<{self.url}{base}?{params}>; rel="next"'
        self.send(h, 200, json.dumps(page).encode(), headers)

    def _hold(self, h, longest: float = 20.0) -> None:
        """Answer nothing until the client hangs up (counted in ``abandoned``) or ``longest`` passes."""
        deadline = time.monotonic() + longest
        while time.monotonic() < deadline and not self.released.is_set():
            readable, _, _ = select.select([h.connection], [], [], 0.1)
            if readable and h.connection.recv(1, socket.MSG_PEEK) == b"":
                self.abandoned += 1
                return

    def _entry(self, name: str, data: bytes) -> dict:
        entry = {
            "type": "file",
            "oid": git_blob_id(data),
            "size": self.listed_sizes.get(name, len(data)),
            "path": name,
        }
        if len(data) > LFS_OVER:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _file(self, h, repo: Repo, commit: str, path: str) -> None:
        data = repo.commits[commit].get(path)
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{path} does not exist")
        served = self.tamper.get(path, data)
        with self._count_lock:
            self._active += 1
            self.max_parallel = max(self.max_parallel, self._active)
        try:
            time.sleep(self.file_delay)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
            if len(data) > LFS_OVER:  # the Hub's metadata for LFS files, as huggingface_hub reads it
                headers.update(
                    {
                        "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                        "X-Linked-Size": str(len(data)),
                    }
                )
            if self.storage is not None and len(data) > LFS_OVER:
                name = hashlib.sha256(served).hexdigest()
                self.storage.blobs[name] = served
                return self.send(h, 302, b"", {**headers, "Location": f"{self.storage.url}/{name}"})
            self.send(h, 200, served, {**headers, "Content-Type": "application/octet-stream"})
        finally:
            with self._count_lock:
                self._active -= 1

    # -- helpers -------------------------------------------------------------

    def _json(self, h, body) -> None:
        self.send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _error(self, h, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send(
            h,
            status,
            body,
            {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message},
        )


def main() -> None:
    """``python tests/hf_stub.py REPO_ID DIRECTORY [LATENCY]``: serve DIRECTORY as REPO_ID's main branch
    (and its LFS files from a second server) until killed; prints the Hub's URL and the commit.
    ``GET /_requests`` answers how many requests the Hub has seen."""
    import sys

    repo_id, directory = sys.argv[1], sys.argv[2]

    class CountingStub(HubStub):
        def handle(self, h, path, query):
            if path == "/_requests":
                return self.send(h, 200, str(len(self.requests) - 1).encode())
            return super().handle(h, path, query)

    hub = CountingStub(BlobStorage())
    hub.file_delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    commit = hub.add(repo_id).push(read_tree(directory))
    print(hub.url, commit, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
