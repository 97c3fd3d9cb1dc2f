"""The manifest each cache entry carries: every file with its size and sha256, and the source."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from beam_hub.files import (
    MANIFEST_NAME,
    PRIVATE_FILES,
    FileRecord,
    FileRecords,
    file_sha256,
    records_from_json,
)


@dataclass
class Manifest:
    handle: str
    files: FileRecords  # relative POSIX path -> FileRecord(size, sha256)
    source: str = ""  # the URL or path the content came from
    archive_sha256: str | None = None
    created: float = field(default_factory=time.time)
    adopted: bool = False  # True for entries written by another tool (tensorflow_hub) and adopted
    audit: dict[str, Any] | None = None  # the module's audit report, see beam_hub.safety.policy
    format: int = 1

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @classmethod
    def build(cls, module_dir: str, handle: str, **extra) -> Manifest:
        files = {}
        for root, _dirs, names in os.walk(module_dir):
            for name in names:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, module_dir).replace(os.sep, "/")
                if rel in PRIVATE_FILES:
                    continue
                files[rel] = FileRecord(os.path.getsize(full), file_sha256(full))
        return cls(handle=handle, files=dict(sorted(files.items())), **extra)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # FileRecords become {"size": ..., "sha256": ...}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """A manifest from its JSON form; ValueError when it is not one."""
        if not isinstance(data, dict) or not {"handle", "files"} <= set(data):
            raise ValueError("not a beam-hub manifest")
        known = {f.name for f in fields(cls)}
        try:
            manifest = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as e:
            raise ValueError(f"malformed manifest: {e}") from None
        manifest.files = records_from_json(manifest.files)
        return manifest

    def write(self, module_dir: str) -> None:
        """Write atomically (temp file, then rename) into ``module_dir``."""
        path = os.path.join(module_dir, MANIFEST_NAME)
        tmp = f"{path}.{uuid.uuid4().hex}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def read(cls, module_dir: str) -> Manifest | None:
        """The entry's manifest, or None when it has none or it is unreadable."""
        try:
            with open(os.path.join(module_dir, MANIFEST_NAME), encoding="utf-8") as f:
                return cls.from_json(json.load(f))
        except (OSError, ValueError):
            return None

    def quick_problems(self, module_dir: str) -> list[str]:
        """Stat every listed file: missing or wrong-size files. Cheap enough for every resolve."""
        problems = []
        for rel, meta in self.files.items():
            try:
                size = os.path.getsize(os.path.join(module_dir, rel))
            except OSError:
                problems.append(f"{rel} is missing")
                continue
            if size != meta.size:
                problems.append(f"{rel} has {size} bytes, expected {meta.size}")
        return problems

    def deep_problems(self, module_dir: str) -> list[str]:
        """quick_problems plus a sha256 of every file (reads everything)."""
        problems = self.quick_problems(module_dir)
        bad = {p.split(" ", 1)[0] for p in problems}
        for rel, meta in self.files.items():
            if rel not in bad and file_sha256(os.path.join(module_dir, rel)) != meta.sha256:
                problems.append(f"{rel} content differs from its sha256")
        return problems
