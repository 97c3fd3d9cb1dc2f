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
| TFHUB_MODEL_LOAD_FORMAT       | COMPRESSED, UNCOMPRESSED or AUTO (the hosting protocol)     | COMPRESSED |
| SOURCE_DATE_EPOCH             | mtime of every member of a packed archive                   | 0 |
| BEAM_HUB_KAGGLE_URL           | where Kaggle handles are fetched from (a mirror, a stub)    | https://www.kaggle.com |
| KAGGLE_API_TOKEN, KAGGLE_USERNAME + KAGGLE_KEY, KAGGLE_CONFIG_DIR | Kaggle credentials, as kagglehub reads them | none |
| KAGGLEHUB_CACHE               | kagglehub's cache, reused read-only                         | ~/.cache/kagglehub |
| HF_ENDPOINT                   | the Hugging Face Hub hf:// handles are fetched from         | https://huggingface.co |
| HF_TOKEN                      | Hugging Face token (else huggingface_hub's saved login)     | none |
| HF_HUB_OFFLINE                | 1/true: hf:// handles come from the cache only              | off |
| BEAM_HUB_NATIVE_BF16          | 1/0: say whether the CPU computes bf16 natively (precision=auto) | read from the CPU flags |
| BEAM_HUB_AUDIT                | warn, refuse or off: what loading does with audit findings  | warn |
| BEAM_HUB_CALL_THREADS         | sub-batches of one columnar batch called at once            | CPU cores |

A value that cannot be used raises :class:`~beam_hub.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from beam_hub.errors import ConfigError
from beam_hub.urls import is_remote_url, local_path

_TRUE = {"1", "true", "yes", "on"}
LOAD_FORMATS = ("COMPRESSED", "UNCOMPRESSED", "AUTO")


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _float(name: str, default: float) -> float:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number; unset it or give seconds/bytes as a number."
        ) from None
    if value != value or value < 0:  # NaN or negative
        raise ConfigError(f"{name}={raw!r} must be a number >= 0; unset it or fix the value.")
    return value


def _int(name: str, default: int) -> int:
    value = _float(name, default)
    if value == float("inf"):
        raise ConfigError(f"{name}={_raw(name)!r} must be a finite number.")
    return int(value)


def tfhub_cache_dir() -> str | None:
    """TFHUB_CACHE_DIR as given: a local path or a shared URL such as gs://bucket/prefix."""
    return _raw("TFHUB_CACHE_DIR") or None


def default_cache_dir() -> str:
    """TFHUB_CACHE_DIR when it is local, else $XDG_CACHE_HOME/beam_hub, else ~/.cache/beam_hub.

    Deliberately not the system temp dir: temp cleaners delete parts of entries there.
    """
    env = tfhub_cache_dir()
    if env and not is_remote_url(env):
        return local_path(env)
    return default_local_cache_dir()


def user_cache_base() -> str:
    """$XDG_CACHE_HOME, else ~/.cache: where this user's caches live."""
    xdg = _raw("XDG_CACHE_HOME")
    return str((Path(xdg).expanduser() if xdg else Path.home() / ".cache").absolute())


def default_local_cache_dir() -> str:
    """$XDG_CACHE_HOME/beam_hub, else ~/.cache/beam_hub."""
    return os.path.join(user_cache_base(), "beam_hub")


def serve_pack_dir() -> str:
    """Where `beam-hub serve` keeps the archives it packs: the user's cache, not a shared temp dir."""
    return os.path.join(user_cache_base(), "beam_hub_serve", "packs")


def offline() -> bool:
    return _raw("BEAM_HUB_OFFLINE").lower() in _TRUE


def connect_timeout() -> float:
    return _float("BEAM_HUB_CONNECT_TIMEOUT", 30.0)


def read_timeout() -> float:
    return _float("BEAM_HUB_READ_TIMEOUT", 60.0)


def download_retries() -> int:
    return _int("BEAM_HUB_DOWNLOAD_RETRIES", 4)


def max_extract_bytes() -> int:
    return _int("BEAM_HUB_MAX_EXTRACT_BYTES", 64 * 2**30)


def call_threads() -> int:
    """BEAM_HUB_CALL_THREADS: how many sub-batches of one table ``apply_table`` calls at once
    (TensorFlow releases the GIL while a call runs); default: this process's CPU cores."""
    default = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    value = _int("BEAM_HUB_CALL_THREADS", default)
    if value < 1:
        raise ConfigError(f"BEAM_HUB_CALL_THREADS={_raw('BEAM_HUB_CALL_THREADS')!r} must be at least 1.")
    return value


def tf_log_level() -> str | None:
    """TF_CPP_MIN_LOG_LEVEL as the user set it (None when unset: beam-hub then quiets TensorFlow's
    native start-up lines itself, see :mod:`beam_hub.native_stderr`)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def progress_mode() -> bool | None:
    raw = _raw("BEAM_HUB_PROGRESS").lower()
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
    value = _raw("BEAM_HUB_LOCAL_CACHE_DIR")
    return local_path(value) if value else None


def model_load_format() -> str:
    """TFHUB_MODEL_LOAD_FORMAT: COMPRESSED (default), UNCOMPRESSED or AUTO, as tensorflow_hub reads it."""
    value = _raw("TFHUB_MODEL_LOAD_FORMAT").upper() or "COMPRESSED"
    if value not in LOAD_FORMATS:
        raise ConfigError(f"TFHUB_MODEL_LOAD_FORMAT={value!r}; use one of {', '.join(LOAD_FORMATS)}.")
    return value


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org): the mtime packed archives give their members."""
    raw = _raw("SOURCE_DATE_EPOCH")
    if not raw:
        return 0
    if not raw.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r} must be a whole number of seconds since 1970.")
    return int(raw)


def kaggle_url() -> str:
    """BEAM_HUB_KAGGLE_URL: the base every Kaggle handle is fetched from (default https://www.kaggle.com)."""
    value = _raw("BEAM_HUB_KAGGLE_URL") or "https://www.kaggle.com"
    if not value.startswith(("https://", "http://")):
        raise ConfigError(
            f"BEAM_HUB_KAGGLE_URL={value!r} must be an http(s) URL such as https://www.kaggle.com."
        )
    return value.rstrip("/")


def kaggle_credentials() -> tuple[str, str] | None:
    """Kaggle credentials as kagglehub finds them: ("token", KAGGLE_API_TOKEN or ~/.kaggle/access_token),
    else ("basic", "user:key") from KAGGLE_USERNAME + KAGGLE_KEY or $KAGGLE_CONFIG_DIR/kaggle.json."""
    config_dir = Path(_raw("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle").expanduser()
    token = _raw("KAGGLE_API_TOKEN") or _read_secret(config_dir / "access_token")
    if token:
        return "token", token
    user, key = _raw("KAGGLE_USERNAME"), _raw("KAGGLE_KEY")
    if user and key:
        return "basic", f"{user}:{key}"
    path = config_dir / "kaggle.json"
    if path.is_file():
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return "basic", f"{data['username']}:{data['key']}"
        except (ValueError, KeyError, TypeError, OSError):
            raise ConfigError(
                f'{path} is not a Kaggle credentials file ({{"username": ..., "key": ...}}).'
            ) from None
    return None


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def kagglehub_cache() -> str:
    """KAGGLEHUB_CACHE: kagglehub's download cache (default ~/.cache/kagglehub)."""
    value = _raw("KAGGLEHUB_CACHE")
    return local_path(value) if value else os.path.join(str(Path.home()), ".cache", "kagglehub")


def hf_endpoint() -> str:
    """HF_ENDPOINT: the Hugging Face Hub (or a mirror) hf:// handles are fetched from."""
    value = _raw("HF_ENDPOINT") or "https://huggingface.co"
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"HF_ENDPOINT={value!r} must be an http(s) URL such as https://huggingface.co.")
    return value.rstrip("/")


def hf_offline() -> bool:
    """True when hf:// handles must come from the cache: BEAM_HUB_OFFLINE or HF_HUB_OFFLINE is set."""
    return offline() or _raw("HF_HUB_OFFLINE").lower() in _TRUE


def hf_token() -> str | None:
    """HF_TOKEN, else the token huggingface_hub saved at login (``hf auth login``), else None."""
    token = _raw("HF_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token() or None


def native_bf16_override() -> bool | None:
    """BEAM_HUB_NATIVE_BF16: 1/0 overrides what the CPU flags say about native bf16; unset: None."""
    raw = _raw("BEAM_HUB_NATIVE_BF16").lower()
    if not raw:
        return None
    if raw in _TRUE or raw in {"0", "false", "no", "off"}:
        return raw in _TRUE
    raise ConfigError(f"BEAM_HUB_NATIVE_BF16={raw!r} must be 1 or 0 (or unset to read the CPU flags).")


AuditMode = Literal["warn", "refuse", "off"]  #: what loading does with an audit that found something
AUDIT_MODES: tuple[AuditMode, ...] = ("warn", "refuse", "off")


def audit_mode(value: str | None = None) -> AuditMode:
    """The audit policy: ``value`` when given (an ``audit=`` argument), else BEAM_HUB_AUDIT, else warn."""
    name = "audit" if value is not None else "BEAM_HUB_AUDIT"
    raw = (value if value is not None else _raw("BEAM_HUB_AUDIT")).strip().lower() or "warn"
    for mode in AUDIT_MODES:
        if raw == mode:
            return mode
    raise ConfigError(f"{name}={raw!r} must be one of {', '.join(AUDIT_MODES)}.")
