"""The manifest each cache entry carries: every file with its size and sha256, and the source."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field

from beam_hub.archive import PRIVATE_FILES, file_sha256

MANIFEST_NAME = ".beam_hub_manifest.json"
assert MANIFEST_NAME in PRIVATE_FILES


@dataclass
class Manifest:
    handle: str
    files: dict[str, dict[str, int | str]]  # relative path -> {"size": int, "sha256": str}
    source: str = ""  # the URL or path the content came from
    archive_sha256: str | None = None
    created: float = field(default_factory=time.time)
    adopted: bool = False  # True for entries written by another tool (tensorflow_hub) and adopted
    format: int = 1

    @property
    def total_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())

    @classmethod
    def build(cls, module_dir: str, handle: str, **extra) -> "Manifest":
        files = {}
        for root, _dirs, names in os.walk(module_dir):
            for name in names:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, module_dir).replace(os.sep, "/")
                if rel in PRIVATE_FILES:
                    continue
                files[rel] = {"size": os.path.getsize(full), "sha256": file_sha256(full)}
        return cls(handle=handle, files=dict(sorted(files.items())), **extra)

    def write(self, module_dir: str) -> None:
        """Write atomically (temp file, then rename) into ``module_dir``."""
        path = os.path.join(module_dir, MANIFEST_NAME)
        tmp = f"{path}.{uuid.uuid4().hex}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def read(cls, module_dir: str) -> "Manifest | None":
        """The entry's manifest, or None when it has none or it is unreadable."""
        try:
            with open(os.path.join(module_dir, MANIFEST_NAME), encoding="utf-8") as f:
                data = json.load(f)
            return cls(**data)
        except (OSError, ValueError, TypeError):
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
            if size != meta["size"]:
                problems.append(f"{rel} has {size} bytes, expected {meta['size']}")
        return problems

    def deep_problems(self, module_dir: str) -> list[str]:
        """quick_problems plus a sha256 of every file (reads everything)."""
        problems = self.quick_problems(module_dir)
        bad = {p.split(" ", 1)[0] for p in problems}
        for rel, meta in self.files.items():
            if rel not in bad and file_sha256(os.path.join(module_dir, rel)) != meta["sha256"]:
                problems.append(f"{rel} content differs from its sha256")
        return problems
