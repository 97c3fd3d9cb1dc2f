"""Named aliases (``DEST@champion``): movable names for versions, stored beside them.

    DEST/1.tar.gz, DEST/2.tar.gz, ...           the versions (see :mod:`beam_hub.layout`)
    DEST/_aliases/champion/00000001.json        {"alias": "champion", "version": "1", "set_at": ...}
    DEST/_aliases/champion/00000002.json        {"alias": "champion", "version": "2", ...}   moved
    DEST/_aliases/champion/00000003.json        {"alias": "champion", "version": "1", ...}   rolled back
    DEST/_aliases/candidate/00000001.json       {"alias": "candidate", "version": "2", ...}
    DEST/_aliases/candidate/00000002.json       {"alias": "candidate", "version": null, ...} removed

An alias is its highest-numbered record; every move adds one, so its history stays readable.
Each record is created only if absent (GCS: ``ifGenerationMatch=0``; a local directory: a hard
link of a complete file), so when two writers move the same alias at once, one of them gets
:class:`~beam_hub.errors.AliasConflictError` instead of both winning silently. ``_aliases`` can
never be a version name (those start with a letter or digit). ``latest`` is not stored: it is
always the highest whole version, computed (see :func:`beam_hub.layout.latest`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import tempfile
import uuid
from dataclasses import dataclass

from fsspec.implementations.local import LocalFileSystem

from beam_hub import layout
from beam_hub.download import filesystem
from beam_hub.errors import AliasConflictError, AliasError, ModuleNotFoundAtHandleError
from beam_hub.urls import protocol

log = logging.getLogger(__name__)

DIRECTORY = "_aliases"
LATEST = "latest"  #: computed, never stored
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  #: what an alias may be called
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # as beam_hub.publish names versions
_RECORD = re.compile(r"^(\d{1,12})\.json$")
_MAX_RECORD_BYTES = 4096
_TIME = re.compile(r"[0-9T:+.Z-]{1,40}")  # an ISO 8601 time, nothing a terminal would act on


@dataclass(frozen=True)
class Alias:
    """Where alias ``name`` under ``dest`` points: ``version`` (its name, e.g. ``"7"``), set at
    ``set_at`` (ISO 8601, UTC), after ``changes`` records (sets, moves, rollbacks and removals; 1: set once)."""

    dest: str
    name: str
    version: str
    set_at: str
    changes: int

    @property
    def handle(self) -> str:
        """The version's handle now (``DEST/7.tar.gz`` or ``DEST/7``)."""
        return layout.version_handle(self.dest, self.version)


def check_name(name: str) -> str:
    if name == LATEST:
        raise AliasError(
            "'latest' is not an alias you can set: it is always the highest whole version. Pick another name."
        )
    if not NAME.fullmatch(name):
        raise AliasError(
            f"Alias {name!r} must start with a letter and hold only letters, digits, '_' or '-' (at most 64)."
        )
    return name


def set_alias(dest: str | os.PathLike, name: str, version: int | str) -> Alias:
    """Point alias ``name`` under ``dest`` (any fsspec URL that holds published versions) at
    ``version``, which must be there, whole. Moving it back to an earlier version is a rollback:
    pipelines that follow the alias move back too. AliasConflictError if someone else moved the
    same alias at the same moment (theirs stands)."""
    dest = _dest(dest)
    check_name(name)
    version = str(version)
    if not _VERSION.fullmatch(version):
        raise AliasError(f"Version {version!r} must be letters, digits, '.', '_' or '-'.")
    try:
        layout.version_handle(dest, version)
    except ModuleNotFoundAtHandleError as e:
        raise AliasError(f"Cannot point {dest}@{name} at version {version}: {e}") from None
    number = max(_numbers(dest, name), default=0) + 1
    set_at = _write(dest, name, number, version)
    log.info("%s@%s -> version %s (record %d)", dest, name, version, number)
    return Alias(dest, name, version, set_at, number)


def remove_alias(dest: str | os.PathLike, name: str) -> None:
    """Remove alias ``name`` under ``dest`` (its history stays); AliasError if it is not set."""
    dest = _dest(dest)
    check_name(name)
    if get_alias(dest, name) is None:
        raise AliasError(f"{dest} has no alias {name!r} ({_listed(dest)}).")
    _write(dest, name, max(_numbers(dest, name)) + 1, None)


def get_alias(dest: str | os.PathLike, name: str) -> Alias | None:
    """Alias ``name`` under ``dest`` as it stands, or None (never set, or removed)."""
    dest = _dest(dest)
    numbers = sorted(_numbers(dest, name), reverse=True)
    for number in numbers:
        record = _read(dest, name, number)
        if record is None:
            continue  # unreadable (being written by a local writer, or damaged): the one before counts
        version, set_at = record
        return None if version is None else Alias(dest, name, version, set_at, len(numbers))
    return None


def list_aliases(dest: str | os.PathLike) -> dict[str, Alias]:
    """Every alias set under ``dest``, by name."""
    dest = _dest(dest)
    names = sorted(
        n for n, is_dir in layout.entries(f"{dest}/{DIRECTORY}").items() if is_dir and NAME.fullmatch(n)
    )
    found = {name: get_alias(dest, name) for name in names}
    return {name: alias for name, alias in found.items() if alias is not None}


def resolve(dest: str, name: str) -> str | None:
    """The handle alias ``name`` under ``dest`` points at, or None when there is no such alias."""
    alias = get_alias(dest, name)
    if alias is None:
        return None
    try:
        return alias.handle
    except ModuleNotFoundAtHandleError as e:
        raise ModuleNotFoundAtHandleError(
            f"{dest}@{name} points at version {alias.version}, which is not there now ({e}). "
            f"Point it at another version: beam-hub alias set {dest} {name} VERSION"
        ) from None


def missing(dest: str, name: str) -> ModuleNotFoundAtHandleError:
    """The error for ``DEST@NAME`` when DEST has no such alias."""
    return ModuleNotFoundAtHandleError(
        f"{dest}@{name}: {dest} has no alias {name!r} ({_listed(dest)}); set one with "
        f"`beam-hub alias set {dest} {name} VERSION`, or name a version."
    )


# --- records --------------------------------------------------------------------------------------


def _dest(dest: str | os.PathLike) -> str:
    dest = os.fspath(dest).rstrip("/")
    if protocol(dest) in ("http", "https"):
        raise AliasError(
            f"{dest}: aliases are set where the versions are stored (a directory or bucket path), "
            "not through a server."
        )
    return dest


def _listed(dest: str) -> str:
    names = sorted(list_aliases(dest))
    return f"its aliases: {', '.join(names)}" if names else "it has none"


def _numbers(dest: str, name: str) -> list[int]:
    return [int(m.group(1)) for m in map(_RECORD.match, layout.entries(f"{dest}/{DIRECTORY}/{name}")) if m]


def _path(name: str, number: int) -> str:
    return f"{DIRECTORY}/{name}/{number:08d}.json"


def _read(dest: str, name: str, number: int) -> tuple[str | None, str] | None:
    """``(version or None, set_at)`` of one record, or None when it is not a valid record."""
    fs, root = filesystem(dest)
    try:
        raw = fs.cat_file(f"{root}/{_path(name, number)}", start=0, end=_MAX_RECORD_BYTES + 1)
        record = json.loads(raw) if len(raw) <= _MAX_RECORD_BYTES else None
    except (OSError, ValueError):
        record = None
    version = record.get("version") if isinstance(record, dict) else ""
    if (
        not isinstance(record, dict)
        or record.get("alias") != name
        or not (version is None or (isinstance(version, str) and _VERSION.fullmatch(version)))
    ):
        log.warning("skipping %s/%s: not an alias record", dest, _path(name, number))
        return None
    set_at = record.get("set_at")
    return version, set_at if isinstance(set_at, str) and _TIME.fullmatch(set_at) else ""


def _write(dest: str, name: str, number: int, version: str | None) -> str:
    """Create record ``number`` (only if absent); return its time."""
    set_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    body = json.dumps({"alias": name, "version": version, "set_at": set_at}).encode() + b"\n"
    fs, root = filesystem(dest)
    target = f"{root}/{_path(name, number)}"
    try:
        if isinstance(fs, LocalFileSystem):
            _create_local(target, body)
        else:
            fs.makedirs(os.path.dirname(target), exist_ok=True)
            fs.pipe_file(target, body, mode="create")  # GCS: ifGenerationMatch=0
    except FileExistsError:
        raise AliasConflictError(
            f"{dest}@{name} was moved by someone else at the same moment (record {number}); theirs "
            f"stands. See where it points (beam-hub alias list {dest}), then set it again if needed."
        ) from None
    return set_at


def _create_local(target: str, body: bytes) -> None:
    """Write ``target`` whole or not at all, failing if it exists (a hard link of a complete file)."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=f".{uuid.uuid4().hex}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.link(staged, target)
    finally:
        os.unlink(staged)
