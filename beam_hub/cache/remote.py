"""The shared cache tier on any fsspec URL (gs://bucket/prefix, a shared file system, ...).

Layout under the remote root, next to the same keys as the local cache:

    <key>/...                  the module's files, uploaded first
    <key>.manifest.json        the marker: written create-if-absent once every file is up; holds
                               the manifest. Readers trust an entry only through its marker, and
                               only if the files they copy match it.
    <key>.lock.json            create-if-absent lock of the one process fetching from the origin:
                               owner and heartbeat; a lock whose heartbeat is older than the TTL
                               belongs to a dead owner and is taken over.

GCS enforces create-if-absent with ``ifGenerationMatch=0`` (gcsfs ``mode="create"``); local and
NFS-style file systems with ``O_EXCL``. A create whose answer was lost (a 503 or a dropped
connection after GCS applied it) is retried and meets 412: the lock then holds this process's own
owner token, which it reads back and recognises.

Nothing here may hang a resolve: every request has connect and read timeouts (BEAM_HUB_CONNECT_
TIMEOUT, BEAM_HUB_READ_TIMEOUT), and every operation a deadline, retries included; a shared tier
that misses one is skipped for the origin (see ``TieredCache``). Everything read from the bucket
is checked: names in a marker must be safe relative paths, and the files must match the marker.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import fsspec

from beam_hub import settings
from beam_hub.cache.manifest import Manifest
from beam_hub.download import filesystem
from beam_hub.files import join_inside

log = logging.getLogger(__name__)
_warned: set[str] = set()
MAX_MARKER_BYTES = 32 << 20  # a manifest of 100,000 files is ~10 MB; a bigger marker is hostile
_MAX_LOCK_BYTES = 64 << 10
_MIN_RATE = 1 << 20  # bytes/s a shared-tier copy must at least reach before it is given up


class SharedTierTimeout(TimeoutError):
    """A shared-tier operation missed its deadline; the caller falls back to the origin."""


class RemoteCache:
    def __init__(self, url: str, *, lock_ttl: float | None = None, poll_max: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.fs, root = filesystem(self.url)
        self.root = root.rstrip("/")
        self.lock_ttl = settings.remote_lock_ttl() if lock_ttl is None else lock_ttl
        self.poll_max = poll_max

    def _call(self, method: str, *args: Any, nbytes: int = 0, **kwargs: Any) -> Any:
        """``self.fs.<method>(...)`` within a deadline: connect + read timeout, plus the time
        ``nbytes`` take at _MIN_RATE. Asynchronous file systems (gcsfs, s3fs, ...) cancel the
        operation at the deadline; others rely on their own timeouts."""
        if not getattr(self.fs, "async_impl", False):
            return getattr(self.fs, method)(*args, **kwargs)
        deadline = settings.connect_timeout() + settings.read_timeout() + nbytes / _MIN_RATE
        try:
            return getattr(self.fs, method)(*args, timeout=deadline, **kwargs)
        except fsspec.exceptions.FSTimeoutError:
            raise SharedTierTimeout(
                f"{method} on {self.url} got no answer within {deadline:.0f}s (BEAM_HUB_READ_TIMEOUT)"
            ) from None

    def __repr__(self) -> str:
        return f"RemoteCache({self.url!r})"

    def _entry(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _marker(self, key: str) -> str:
        return f"{self.root}/{key}.manifest.json"

    def _lock(self, key: str) -> str:
        return f"{self.root}/{key}.lock.json"

    # -- reading -------------------------------------------------------------------------------

    def manifest(self, key: str, handle: str | None = None) -> Manifest | None:
        """The entry's marker, or None when there is none; a marker that is unreadable, names an
        unsafe file or another handle is hostile or damaged: it is deleted with a warning."""
        try:
            raw = self._call("cat_file", self._marker(key), start=0, end=MAX_MARKER_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            if len(raw) > MAX_MARKER_BYTES:
                raise ValueError(f"it is larger than {MAX_MARKER_BYTES} bytes")
            manifest = Manifest.from_json(json.loads(raw))
            if handle is not None and manifest.handle != handle:
                raise ValueError(f"it describes {manifest.handle!r}, not {handle!r}")
        except ValueError as e:
            log.warning(
                "Remote cache marker %s/%s cannot be used (%s); none of the entry is used, it is "
                "fetched from its origin and shared again",
                self.url,
                key,
                e,
            )
            self._discard(key)
            return None
        return manifest

    def fetch_into(self, key: str, target: str, handle: str | None = None) -> Manifest | None:
        """Copy the entry's files into the new directory ``target`` (in parallel) and check them.

        Returns the manifest when the copy matches it, None when there is no (whole) entry; a
        damaged entry is deleted so that the next fetch rebuilds it.
        """
        manifest = self.manifest(key, handle)
        if manifest is None:
            return None
        self.fs.invalidate_cache(self._entry(key))  # listings cached by the filesystem may be stale
        remote = [f"{self._entry(key)}/{rel}" for rel in manifest.files]
        local = [join_inside(target, rel) for rel in manifest.files]  # names were checked in from_json
        for path in local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            self._call("get", remote, local, nbytes=manifest.total_bytes)  # gcsfs copies these concurrently
        except FileNotFoundError:
            pass  # a missing file shows up as a problem below
        got = Manifest.build(target, manifest.handle)
        if got.files != manifest.files:
            bad = sorted(set(manifest.files) ^ set(got.files)) or sorted(
                rel for rel in manifest.files if got.files.get(rel) != manifest.files[rel]
            )
            log.warning(
                "Remote cache entry %s/%s does not match its manifest (%s); rebuilding it",
                self.url,
                key,
                ", ".join(bad[:5]),
            )
            self._discard(key)
            return None
        return manifest

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: str, module_dir: str, manifest: Manifest) -> None:
        """Upload the files, then the marker (create-if-absent): readers never see half an entry."""
        entry = self._entry(key)
        self.fs.invalidate_cache(entry)
        if self._call("exists", entry):
            self._call("rm", entry, recursive=True)  # leftovers of a dead uploader (no marker: never trusted)
        locals_ = [os.path.join(module_dir, *rel.split("/")) for rel in manifest.files]
        self._call("put", locals_, [f"{entry}/{rel}" for rel in manifest.files], nbytes=manifest.total_bytes)
        try:
            self._call("pipe_file", self._marker(key), json.dumps(manifest.to_json()).encode(), mode="create")
        except FileExistsError:
            pass  # another process completed the same entry (or our own retried create was applied)

    def _discard(self, key: str) -> None:
        for path, recursive in ((self._marker(key), False), (self._entry(key), True)):
            try:
                self._call("rm", path, recursive=recursive)
            except FileNotFoundError:
                pass

    # -- the origin lock -------------------------------------------------------------------------

    def run_once(self, key: str, build: Callable[[], Any]) -> bool:
        """Run ``build`` in exactly one process across machines, unless the entry completes first.

        Returns True if this process built, False if another process's entry appeared. A lock
        whose heartbeat is older than the TTL is taken over.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        delay = 0.2
        while True:
            if self._try_lock(key, owner):
                stop = threading.Event()
                beat = threading.Thread(target=self._heartbeat, args=(key, owner, stop), daemon=True)
                beat.start()
                try:
                    if self.manifest(key) is None:
                        build()
                        return True
                    return False
                finally:
                    stop.set()
                    beat.join(timeout=5)
                    self._unlock(key, owner)
            if self.manifest(key) is not None:
                return False
            self._take_over_if_stale(key)
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(self.poll_max, delay * 2)

    def _lock_record(self, owner: str) -> bytes:
        return json.dumps({"owner": owner, "heartbeat": time.time()}).encode()

    def _try_lock(self, key: str, owner: str) -> bool:
        """Create the lock holding ``owner``; True if it is ours (also when our own create was
        applied but its answer lost, so that the retry met 412)."""
        try:
            self._call("pipe_file", self._lock(key), self._lock_record(owner), mode="create")
            return True
        except FileExistsError:
            record = self._read_lock(key)
            return record is not None and record["owner"] == owner

    def _read_lock(self, key: str) -> dict[str, Any] | None:
        """{"owner": str, "heartbeat": float}, or None without a lock; garbage reads as a dead owner."""
        try:
            raw = self._call("cat_file", self._lock(key), start=0, end=_MAX_LOCK_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            if len(raw) > _MAX_LOCK_BYTES:
                raise ValueError("an oversized lock record")
            data = json.loads(raw)
            return {"owner": str(data["owner"]), "heartbeat": float(data["heartbeat"])}
        except (ValueError, TypeError, KeyError):
            return {"owner": "?", "heartbeat": 0.0}

    def _heartbeat(self, key: str, owner: str, stop: threading.Event) -> None:
        while not stop.wait(max(0.5, self.lock_ttl / 4)):
            try:
                record = self._read_lock(key)
                if record is None or record["owner"] != owner:
                    log.warning("Lost the remote cache lock on %s/%s", self.url, key)
                    return
                self._call("pipe_file", self._lock(key), self._lock_record(owner))
            except Exception as e:  # noqa: BLE001 - a missed beat only risks a takeover, which is safe
                log.warning(
                    "Heartbeat on the remote cache lock %s/%s failed (%s: %s)",
                    self.url,
                    key,
                    type(e).__name__,
                    e,
                )

    def _take_over_if_stale(self, key: str) -> None:
        record = self._read_lock(key)
        if record is not None and time.time() - record["heartbeat"] > self.lock_ttl:
            log.warning(
                "Remote cache lock on %s/%s held by %s has no heartbeat for %.0fs; taking it over",
                self.url,
                key,
                record["owner"],
                time.time() - record["heartbeat"],
            )
            try:
                self._call("rm", self._lock(key))
            except FileNotFoundError:
                pass

    def _unlock(self, key: str, owner: str) -> None:
        record = self._read_lock(key)
        if record is not None and record["owner"] == owner:
            try:
                self._call("rm", self._lock(key))
            except FileNotFoundError:
                pass


def warn_once(url: str, error: BaseException) -> None:
    if url not in _warned:
        _warned.add(url)
        log.warning(
            "The shared module cache %s cannot be used (%s: %s); fetching from the origin with the "
            "local cache only. Check the bucket exists, answers, and the workers may read and write it.",
            url,
            type(error).__name__,
            error,
        )
