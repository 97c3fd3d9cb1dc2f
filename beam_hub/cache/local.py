"""The local cache: tensorflow_hub's layout, plus a manifest, a real lock and atomic publishing.

Layout under the cache root (compatible with tensorflow_hub, which reuses our entries and whose
entries we reuse):

    <sha1(handle)>/                   the module directory (the SavedModel root)
    <sha1(handle)>/.beam_hub_manifest.json   files, sizes and sha256s; the source; archive sha256
    <sha1(handle)>.descriptor.txt     human-readable: handle, time, host (tensorflow_hub's format)
    <sha1(handle)>.beam_hub.lock      flock held while one process fetches; released by the
                                      kernel if that process dies, so nobody waits on a dead owner
    <sha1(handle)>.beam_hub-<uuid>.tmp   staging while fetching; never looks like an entry
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import filelock

from beam_hub import settings
from beam_hub.cache.base import Accept, Fill, cache_key
from beam_hub.cache.manifest import MANIFEST_NAME, Manifest
from beam_hub.errors import CacheError, OfflineCacheMissError
from beam_hub.files import write_text_atomic
from beam_hub.savedmodel import require_saved_model_dir, structural_problems

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[0-9a-f]{40}$")
_TOUCH_EVERY_S = 3600.0
_LOCK_POLL_S = 10.0
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class EntryInfo:
    key: str
    path: str
    handle: str | None
    size: int
    last_used: float
    has_manifest: bool


class LocalCache:
    """A directory of resolved modules, safe for many processes at once."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = (
            os.path.abspath(os.path.expanduser(os.fspath(root))) if root else settings.default_cache_dir()
        )

    def __repr__(self) -> str:
        return f"LocalCache({self.root!r})"

    # -- paths ---------------------------------------------------------------

    def entry_dir(self, handle: str) -> str:
        return os.path.join(self.root, cache_key(handle))

    def _lock_path(self, key: str) -> str:
        return os.path.join(self.root, f"{key}.beam_hub.lock")

    def _staging_dir(self, key: str) -> str:
        return os.path.join(self.root, f"{key}.beam_hub-{uuid.uuid4().hex}.tmp")

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise CacheError(
                f"Cannot create the module cache at {self.root}: {e}. Set TFHUB_CACHE_DIR or pass "
                "cache_dir= to a writable directory."
            ) from e
        if not os.access(self.root, os.W_OK):
            raise CacheError(
                f"The module cache {self.root} is not writable. Set TFHUB_CACHE_DIR or pass "
                "cache_dir= to a writable directory."
            )

    # -- lookups -------------------------------------------------------------

    def _problems(self, path: str, accept: Accept | None = None) -> tuple[Manifest | None, list[str]]:
        manifest = Manifest.read(path)
        if manifest is not None:
            if accept is not None and not accept(manifest):
                why = (
                    f"it is out of date or not what the handle pins ({manifest.source}, archive sha256 "
                    f"{manifest.archive_sha256 or 'unknown'})"
                )
                return manifest, [why]
            return manifest, manifest.quick_problems(path)
        if os.path.exists(os.path.join(path, MANIFEST_NAME)):
            return None, [f"{MANIFEST_NAME} is unreadable"]
        if accept is not None:  # written by another tool or by hand: nothing to check it against
            return None, ["it has no beam-hub manifest to check against the handle's requirements"]
        return None, structural_problems(path)

    def get(self, handle: str, accept: Accept | None = None) -> str | None:
        """The entry's directory when it is present and whole (and ``accept``-ed), else None."""
        path = self.entry_dir(handle)
        if not os.path.isdir(path):
            return None
        manifest, problems = self._problems(path, accept)
        if problems:
            return None
        if manifest is None:
            self._adopt(handle, path)
        else:
            self._touch(path)
        return path

    def _adopt(self, handle: str, path: str) -> None:
        """Give an entry written by tensorflow_hub a manifest, if nobody holds the lock right now."""
        self._ensure_root()
        lock = filelock.FileLock(self._lock_path(cache_key(handle)))
        try:
            with lock.acquire(timeout=0):
                if Manifest.read(path) is None and not structural_problems(path):
                    Manifest.build(
                        path, handle, source="adopted from an existing cache entry", adopted=True
                    ).write(path)
                    log.info("Adopted existing cache entry %s for %s", path, handle)
        except filelock.Timeout:
            pass
        except OSError as e:  # a read-only cache is still usable
            log.debug("Could not write a manifest into %s: %s", path, e)

    @staticmethod
    def _touch(path: str) -> None:
        mpath = os.path.join(path, MANIFEST_NAME)
        try:
            if time.time() - os.path.getmtime(mpath) > _TOUCH_EVERY_S:
                os.utime(mpath)
        except OSError:
            pass

    # -- fetching ------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, handle: str) -> Iterator[None]:
        """Hold the entry's cross-process lock, logging while waiting for another process."""
        self._ensure_root()
        key = cache_key(handle)
        lock = filelock.FileLock(self._lock_path(key))
        start = time.monotonic()
        limit = settings.lock_timeout()
        while True:
            try:
                lock.acquire(timeout=max(0.0, min(_LOCK_POLL_S, limit - (time.monotonic() - start))))
                break
            except filelock.Timeout:
                waited = time.monotonic() - start
                if waited >= limit:
                    raise CacheError(
                        f"Waited {waited:.0f}s for another process fetching {handle!r} into "
                        f"{self.root}. If it is stuck, stop it; raise BEAM_HUB_LOCK_TIMEOUT to wait longer."
                    ) from None
                log.info("Waiting for another process to finish fetching %s (%.0fs so far)", handle, waited)
        try:
            yield
        finally:
            lock.release()

    def fetch(
        self,
        handle: str,
        fill: Fill,
        *,
        network: bool = True,
        accept: Accept | None = None,
    ) -> str:
        """Return the entry for ``handle``, calling ``fill(staging_dir)`` once to create it if needed.

        Exactly one process fills an entry at a time; the others wait and reuse it. The entry is
        published by one rename after it is complete and has its manifest, so a crash at any
        point leaves either no entry or a whole one. A damaged entry is discarded with a warning
        and fetched again; so is one whose manifest ``accept`` rejects (e.g. an outdated build).
        """
        hit = self.get(handle, accept)
        if hit:
            return hit
        path = self.entry_dir(handle)
        if network and settings.offline():
            state = "is damaged or out of date" if os.path.isdir(path) else "is not in the cache"
            raise OfflineCacheMissError(
                f"BEAM_HUB_OFFLINE is set and {handle!r} {state} at {self.root}. Resolve it once "
                "with network access (`beam-hub resolve HANDLE`), point TFHUB_CACHE_DIR at a cache "
                "that has it, or unset BEAM_HUB_OFFLINE."
            )
        with self.lock(handle):
            if os.path.isdir(path):
                _, problems = self._problems(path, accept)
                if not problems:
                    return self.get(handle, accept) or path
                log.warning(
                    "Cache entry %s for %s cannot be used (%s); fetching it again.",
                    path,
                    handle,
                    "; ".join(problems[:5]),
                )
                self._discard(path)
            self._clean_staging(cache_key(handle))
            staging = self._staging_dir(cache_key(handle))
            os.makedirs(staging)
            try:
                self._fill_and_publish(handle, fill, staging, path)
            except OSError as e:
                if e.errno not in _DISK_FULL:
                    raise
                raise self._disk_full(handle, staging) from e
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        log.info("Cached %s at %s", handle, path)
        return path

    def _fill_and_publish(self, handle: str, fill: Fill, staging: str, path: str) -> None:
        filled = fill(staging)
        require_saved_model_dir(filled.root, handle)
        manifest = (
            Manifest(handle, dict(filled.files), source=filled.source, archive_sha256=filled.archive_sha256)
            if filled.files is not None
            else Manifest.build(
                filled.root, handle, source=filled.source, archive_sha256=filled.archive_sha256
            )
        )
        manifest.write(filled.root)
        self._write_descriptor(handle, path)
        os.rename(filled.root, path)

    def _disk_full(self, handle: str, staging: str) -> CacheError:
        written = _tree_size(staging)
        shutil.rmtree(staging, ignore_errors=True)
        free = shutil.disk_usage(self.root).free
        return CacheError(
            f"No space left on the disk of the module cache {self.root} while fetching {handle!r}: "
            f"{written} bytes were written before it filled up, so the module needs more than that "
            f"({free} bytes are free). Free space (e.g. `beam-hub cache prune --older-than DAYS`) or "
            "point TFHUB_CACHE_DIR at a larger disk."
        )

    def _write_descriptor(self, handle: str, path: str) -> None:
        text = (
            f"Module: {handle}\nDownload Time: {datetime.datetime.today()}\n"
            f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})"
        )
        write_text_atomic(f"{path}.descriptor.txt", text)

    def _discard(self, path: str) -> None:
        """Make an entry disappear at once (rename), then delete it."""
        trash = self._staging_dir(os.path.basename(path))
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_staging(self, key: str) -> None:
        """Remove staging left by a killed process (we hold the lock, so none is live)."""
        for stale in glob.glob(os.path.join(glob.escape(self.root), f"{key}.beam_hub-*.tmp")):
            shutil.rmtree(stale, ignore_errors=True)

    # -- management ----------------------------------------------------------

    def entries(self) -> list[EntryInfo]:
        if not os.path.isdir(self.root):
            return []
        out = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if not (_KEY.match(name) and os.path.isdir(path)):
                continue
            manifest = Manifest.read(path)
            handle: str | None
            if manifest is not None:
                handle = manifest.handle
                size = manifest.total_bytes
                last_used = os.path.getmtime(os.path.join(path, MANIFEST_NAME))
            else:
                handle = _descriptor_handle(path)
                size = _tree_size(path)
                last_used = os.path.getmtime(path)
            out.append(EntryInfo(name, path, handle, size, last_used, manifest is not None))
        return out

    def verify(self, *, deep: bool = True) -> dict[str, list[str]]:
        """Problems per entry path (an empty list means whole). ``deep`` hashes every file."""
        result = {}
        for entry in self.entries():
            manifest = Manifest.read(entry.path)
            if manifest is None:
                result[entry.path] = structural_problems(entry.path)
            else:
                result[entry.path] = (manifest.deep_problems if deep else manifest.quick_problems)(entry.path)
        return result

    def repair(self, *, deep: bool = True) -> tuple[dict[str, list[str]], set[str]]:
        """:meth:`verify`, then remove each damaged entry (unless another process is fetching it
        right now) so that its next resolve really fetches it again. Returns the problems by
        entry path and the paths removed."""
        results = self.verify(deep=deep)
        entries = {e.path: e for e in self.entries()}
        removed = {
            path
            for path, problems in results.items()
            if problems and path in entries and self.remove(entries[path])
        }
        return results, removed

    def remove(self, entry: EntryInfo) -> bool:
        """Delete one entry under its lock; False if another process is fetching it right now."""
        lock = filelock.FileLock(self._lock_path(entry.key))
        try:
            with lock.acquire(timeout=0):
                self._discard(entry.path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{entry.path}.descriptor.txt")
                self._clean_staging(entry.key)
            return True
        except filelock.Timeout:
            return False

    def prune(self, older_than_days: float) -> list[EntryInfo]:
        """Remove entries not used for ``older_than_days`` days; return the removed ones."""
        cutoff = time.time() - older_than_days * 86400
        return [e for e in self.entries() if e.last_used < cutoff and self.remove(e)]

    def clear(self) -> list[EntryInfo]:
        return [e for e in self.entries() if self.remove(e)]


def _descriptor_handle(path: str) -> str | None:
    try:
        with open(f"{path}.descriptor.txt", encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    return first[len("Module: ") :].strip() if first.startswith("Module: ") else None


def _tree_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total
