"""The files of a module: one record type (size and sha256 by relative path) and hashing.

Archive extraction, cache manifests, the shared tier's markers and fill results all describe a
module's files the same way: ``{"variables/variables.index": FileRecord(size, sha256), ...}``,
keyed by the POSIX path relative to the module root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_CHUNK = 1 << 20
NAME_MAX = 255  # bytes in one path component (Linux, macOS, most file systems)
PATH_MAX = 4096  # bytes in a whole path (Linux)
_DRIVE = re.compile(r"^[A-Za-z]:")
#: The manifest a cache entry carries beside the module's own files.
MANIFEST_NAME = ".beam_hub_manifest.json"
#: Files beam-hub keeps inside a module directory that are not part of the module.
PRIVATE_FILES = frozenset({MANIFEST_NAME})


@dataclass(frozen=True)
class FileRecord:
    """One file of a module: its size in bytes and the sha256 of its content."""

    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


FileRecords = dict[str, FileRecord]


def relative_name(name: str) -> str:
    """``name`` (from an archive, a manifest, a marker or a listing) as a safe relative POSIX path.

    Refuses (ValueError saying why) what could point outside the directory it is joined to or
    that the file system cannot hold: empty names, NUL, absolute paths, drives, backslashes,
    ``..`` segments, components over NAME_MAX or paths over PATH_MAX bytes. ``.`` segments and
    repeated slashes are dropped: ``./a//b`` is ``a/b``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("an empty name")
    if "\0" in name:
        raise ValueError("a NUL character in the name")
    if name.startswith("/"):
        raise ValueError("an absolute path")
    if _DRIVE.match(name):
        raise ValueError("a drive letter")
    if "\\" in name:
        raise ValueError("a backslash in the name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("a '..' segment")
    if not parts:
        raise ValueError("no file name")
    if len(name.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise ValueError(f"a path longer than {PATH_MAX} bytes")
    if any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in parts):
        raise ValueError(f"a path component longer than {NAME_MAX} bytes")
    return "/".join(parts)


def join_inside(root: str, name: str) -> str:
    """``root``/``name`` for a checked relative name, refusing a result outside ``root`` once
    symbolic links already under ``root`` are resolved (ValueError)."""
    rel = relative_name(name)
    path = os.path.join(root, *rel.split("/"))
    real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
    if not os.path.realpath(path).startswith(real_root):
        raise ValueError(f"it resolves outside {root}")
    return path


def records_from_json(data: Any) -> FileRecords:
    """Records from their JSON form (``{path: {"size": int, "sha256": str}}``).

    ValueError when malformed or when a name is unsafe (see :func:`relative_name`); private
    names (a manifest listing itself) are dropped.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"file records must be an object, not {type(data).__name__}")
    out: FileRecords = {}
    for rel, meta in data.items():
        if not (
            isinstance(rel, str)
            and isinstance(meta, Mapping)
            and type(meta.get("size")) is int
            and meta["size"] >= 0
            and isinstance(meta.get("sha256"), str)
        ):
            raise ValueError(f"malformed file record {rel!r}: {meta!r}")
        try:
            name = relative_name(rel)
        except ValueError as e:
            raise ValueError(f"unsafe file name {rel!r} ({e})") from None
        if name not in PRIVATE_FILES:
            out[name] = FileRecord(meta["size"], meta["sha256"])
    return out


def records_to_json(files: Mapping[str, FileRecord]) -> dict[str, dict[str, Any]]:
    return {rel: record.to_json() for rel, record in sorted(files.items())}


def file_sha256(path: str, chunk: int = _CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temp file beside it, then a rename.
    The temp file is removed on every failure; the error is raised."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
