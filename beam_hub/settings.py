"""Environment settings, read at call time (never cached at import) so tests and workers can change them.

| variable                      | meaning                                                     | default |
|-------------------------------|-------------------------------------------------------------|---------|
| TFHUB_CACHE_DIR               | cache directory (shared with tensorflow_hub)                | ~/.cache/beam_hub |
| XDG_CACHE_HOME                | base of the default cache directory                         | ~/.cache |
| BEAM_HUB_OFFLINE              | 1/true: never touch the network, cache only                 | off |
| BEAM_HUB_CONNECT_TIMEOUT      | seconds to connect to an HTTP server                        | 30 |
| BEAM_HUB_READ_TIMEOUT         | seconds without a byte before a download attempt is dropped | 60 |
| BEAM_HUB_DOWNLOAD_RETRIES     | retries after the first attempt (connection errors, 5xx)    | 4 |
| BEAM_HUB_RETRY_BACKOFF        | first retry delay in seconds, doubled on each retry         | 1 |
| BEAM_HUB_MAX_EXTRACT_BYTES    | cap on the bytes an archive may expand to                   | 64 GiB |
| BEAM_HUB_PROGRESS             | 1: tqdm bar, 0: log lines only; unset: bar on a terminal    | auto |
| BEAM_HUB_REMOTE_LOCK_TTL      | seconds without heartbeat before a shared-cache lock is taken over | 120 |
| BEAM_HUB_LOCAL_CACHE_DIR      | local tier when TFHUB_CACHE_DIR is a remote URL             | as the default |
| BEAM_HUB_LOCK_TIMEOUT         | longest wait on another live process fetching a module     | 3600 |
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it or give seconds/bytes as a number") from None


def default_cache_dir() -> str:
    """TFHUB_CACHE_DIR, else $XDG_CACHE_HOME/beam_hub, else ~/.cache/beam_hub.

    Deliberately not the system temp dir: temp cleaners delete parts of entries there.
    """
    env = os.environ.get("TFHUB_CACHE_DIR", "").strip()
    if env and "://" not in env:
        return os.path.abspath(os.path.expanduser(env))
    return default_local_cache_dir()


def default_local_cache_dir() -> str:
    """$XDG_CACHE_HOME/beam_hub, else ~/.cache/beam_hub."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return str(base.absolute() / "beam_hub")


def offline() -> bool:
    return os.environ.get("BEAM_HUB_OFFLINE", "").strip().lower() in _TRUE


def connect_timeout() -> float:
    return _float("BEAM_HUB_CONNECT_TIMEOUT", 30.0)


def read_timeout() -> float:
    return _float("BEAM_HUB_READ_TIMEOUT", 60.0)


def download_retries() -> int:
    return int(_float("BEAM_HUB_DOWNLOAD_RETRIES", 4))


def max_extract_bytes() -> int:
    return int(_float("BEAM_HUB_MAX_EXTRACT_BYTES", 64 * 2**30))


def progress_mode() -> bool | None:
    raw = os.environ.get("BEAM_HUB_PROGRESS", "").strip().lower()
    if not raw:
        return None
    return raw in _TRUE


def lock_timeout() -> float:
    """BEAM_HUB_LOCK_TIMEOUT: longest wait for another live process fetching the same module."""
    return _float("BEAM_HUB_LOCK_TIMEOUT", 3600.0)


def retry_backoff() -> float:
    """BEAM_HUB_RETRY_BACKOFF: first retry delay in seconds; doubles on each retry (capped at 30)."""
    return _float("BEAM_HUB_RETRY_BACKOFF", 1.0)


def remote_lock_ttl() -> float:
    """BEAM_HUB_REMOTE_LOCK_TTL: seconds without a heartbeat after which a shared-cache lock is taken over."""
    return _float("BEAM_HUB_REMOTE_LOCK_TTL", 120.0)


def local_cache_dir() -> str | None:
    """BEAM_HUB_LOCAL_CACHE_DIR: the local tier when the cache directory is remote."""
    value = os.environ.get("BEAM_HUB_LOCAL_CACHE_DIR", "").strip()
    return os.path.abspath(os.path.expanduser(value)) if value else None
