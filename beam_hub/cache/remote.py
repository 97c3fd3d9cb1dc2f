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
NFS-style file systems with ``O_EXCL``.
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

import fsspec

from beam_hub import settings
from beam_hub.cache.manifest import Manifest

log = logging.getLogger(__name__)
_warned: set[str] = set()


class RemoteCache:
    def __init__(self, url: str, *, lock_ttl: float | None = None, poll_max: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")
        self.lock_ttl = settings.remote_lock_ttl() if lock_ttl is None else lock_ttl
        self.poll_max = poll_max

    def __repr__(self) -> str:
        return f"RemoteCache({self.url!r})"

    def _entry(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _marker(self, key: str) -> str:
        return f"{self.root}/{key}.manifest.json"

    def _lock(self, key: str) -> str:
        return f"{self.root}/{key}.lock.json"

    # -- reading -------------------------------------------------------------------------------

    def manifest(self, key: str) -> Manifest | None:
        try:
            return Manifest.from_json(json.loads(self.fs.cat_file(self._marker(key))))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning(
                "Remote cache marker %s/%s is unreadable; treating the entry as damaged", self.url, key
            )
            self._discard(key)
            return None

    def fetch_into(self, key: str, target: str) -> Manifest | None:
        """Copy the entry's files into the new directory ``target`` (in parallel) and check them.

        Returns the manifest when the copy matches it, None when there is no (whole) entry; a
        damaged entry is deleted so that the next fetch rebuilds it.
        """
        manifest = self.manifest(key)
        if manifest is None:
            return None
        self.fs.invalidate_cache(self._entry(key))  # listings cached by the filesystem may be stale
        remote = [f"{self._entry(key)}/{rel}" for rel in manifest.files]
        local = [os.path.join(target, *rel.split("/")) for rel in manifest.files]
        for path in local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            self.fs.get(remote, local)  # gcsfs copies these concurrently
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
        if self.fs.exists(entry):
            self.fs.rm(entry, recursive=True)  # leftovers of a dead uploader (no marker: never trusted)
        locals_ = [os.path.join(module_dir, *rel.split("/")) for rel in manifest.files]
        self.fs.put(locals_, [f"{entry}/{rel}" for rel in manifest.files])
        try:
            self.fs.pipe_file(self._marker(key), json.dumps(manifest.to_json()).encode(), mode="create")
        except FileExistsError:
            pass  # another process completed the same entry: either marker describes the same content

    def _discard(self, key: str) -> None:
        for path, recursive in ((self._marker(key), False), (self._entry(key), True)):
            try:
                self.fs.rm(path, recursive=recursive)
            except FileNotFoundError:
                pass

    # -- the origin lock -------------------------------------------------------------------------

    def run_once(self, key: str, build: Callable[[], Manifest | None]) -> bool:
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
        try:
            self.fs.pipe_file(self._lock(key), self._lock_record(owner), mode="create")
            return True
        except FileExistsError:
            return False

    def _read_lock(self, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self._lock(key)))
        except FileNotFoundError:
            return None
        except ValueError:
            return {"owner": "?", "heartbeat": 0.0}

    def _heartbeat(self, key: str, owner: str, stop: threading.Event) -> None:
        while not stop.wait(max(0.5, self.lock_ttl / 4)):
            record = self._read_lock(key)
            if record is None or record.get("owner") != owner:
                log.warning("Lost the remote cache lock on %s/%s", self.url, key)
                return
            self.fs.pipe_file(self._lock(key), self._lock_record(owner))

    def _take_over_if_stale(self, key: str) -> None:
        record = self._read_lock(key)
        if record is not None and time.time() - float(record.get("heartbeat", 0)) > self.lock_ttl:
            log.warning(
                "Remote cache lock on %s/%s held by %s has no heartbeat for %.0fs; taking it over",
                self.url,
                key,
                record.get("owner"),
                time.time() - float(record.get("heartbeat", 0)),
            )
            try:
                self.fs.rm(self._lock(key))
            except FileNotFoundError:
                pass

    def _unlock(self, key: str, owner: str) -> None:
        record = self._read_lock(key)
        if record is not None and record.get("owner") == owner:
            try:
                self.fs.rm(self._lock(key))
            except FileNotFoundError:
                pass


def warn_once(url: str, error: BaseException) -> None:
    if url not in _warned:
        _warned.add(url)
        log.warning(
            "The shared module cache %s cannot be used (%s: %s); fetching from the origin with the "
            "local cache only. Check the bucket exists and the workers may read and write it.",
            url,
            type(error).__name__,
            error,
        )
