"""The files of a module: one record type (size and sha256 by relative path) and hashing.

Archive extraction, cache manifests, the shared tier's markers and fill results all describe a
module's files the same way: ``{"variables/variables.index": FileRecord(size, sha256), ...}``,
keyed by the POSIX path relative to the module root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_CHUNK = 1 << 20
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


def records_from_json(data: Any) -> FileRecords:
    """Records from their JSON form (``{path: {"size": int, "sha256": str}}``); ValueError if malformed."""
    if not isinstance(data, Mapping):
        raise ValueError(f"file records must be an object, not {type(data).__name__}")
    out: FileRecords = {}
    for rel, meta in data.items():
        if not (
            isinstance(rel, str)
            and isinstance(meta, Mapping)
            and type(meta.get("size")) is int
            and isinstance(meta.get("sha256"), str)
        ):
            raise ValueError(f"malformed file record {rel!r}: {meta!r}")
        out[rel] = FileRecord(meta["size"], meta["sha256"])
    return out


def records_to_json(files: Mapping[str, FileRecord]) -> dict[str, dict[str, Any]]:
    return {rel: record.to_json() for rel, record in sorted(files.items())}


def file_sha256(path: str, chunk: int = _CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
