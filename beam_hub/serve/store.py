"""The modules under a served ROOT: URL path <-> directory or pre-packed archive, packing, digests."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

from beam_hub import alias_store
from beam_hub.archive import pack
from beam_hub.files import file_sha256
from beam_hub.savedmodel import is_saved_model_dir, structural_problems

SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class Module:
    path: str  # URL path without leading or trailing slash, e.g. "acme/fruit/1"
    directory: str | None  # the module directory, if there is one
    archive: str | None  # a pre-packed ROOT/<path>.tar.gz, if there is one


@dataclass(frozen=True)
class Archive:
    file: str
    size: int
    mtime: float
    sha256: str


class ModuleStore:
    """Finds modules under ``root`` and gives each one a reproducible tar.gz with its sha256.

    A module is a directory holding saved_model.pb (served at its relative path) or a pre-packed
    ``<path>.tar.gz``. Archives of directories are packed on first request into ``pack_dir`` and
    kept; module versions are immutable, as publishing makes them.
    """

    def __init__(self, root: str, pack_dir: str) -> None:
        self.root = os.path.realpath(root)
        self.pack_dir = pack_dir
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._digests: dict[tuple[str, int, float], str] = {}

    @staticmethod
    def _parts(url_path: str) -> list[str] | None:
        """The path's segments, or None when one could step outside ``root`` or is hidden."""
        parts = [p for p in url_path.strip("/").split("/") if p]
        if not parts or any(p in (".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        return parts

    def _inside(self, path: str) -> bool:
        return path.startswith(self.root + os.sep)  # after realpath: symlinks out of root are refused too

    def find(self, url_path: str) -> Module | None:
        """The module at ``url_path``, or None. Never looks outside ``root``."""
        parts = self._parts(url_path)
        if parts is None:
            return None
        rel = "/".join(parts)
        directory = os.path.realpath(os.path.join(self.root, *parts))
        archive = os.path.realpath(os.path.join(self.root, *parts[:-1], parts[-1] + SUFFIX))
        found_dir = directory if self._inside(directory) and is_saved_model_dir(directory) else None
        found_archive = archive if self._inside(archive) and os.path.isfile(archive) else None
        if not (found_dir or found_archive):
            return None
        return Module(rel, found_dir, found_archive)

    def latest(self, model_path: str) -> Module | None:
        """The highest whole integer version under ``model_path`` (``<n>.tar.gz``, or a directory
        holding a whole SavedModel: one still being written is skipped), or None."""
        directory = self._model_directory(model_path)
        parts = self._parts(model_path)
        if directory is None or parts is None:
            return None
        numbers = set()
        for name in os.listdir(directory):
            stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
            if stem.isdigit():
                numbers.add(int(stem))
        for number in sorted(numbers, reverse=True):
            module = self.find(f"{'/'.join(parts)}/{number}")
            if module is not None and (module.archive or not structural_problems(module.directory or "")):
                return module
        return None

    def aliases(self, model_path: str) -> dict[str, Module]:
        """The named aliases of the model at ``model_path`` (see :mod:`beam_hub.alias_store`):
        name -> the version's module (an alias whose version is gone is left out)."""
        directory = self._model_directory(model_path)
        if directory is None:
            return {}
        rel = "/".join(self._parts(model_path) or [])
        found = {}
        for name, alias in alias_store.list_aliases(directory).items():
            module = self.find(f"{rel}/{alias.version}")
            if module is not None:
                found[name] = module
        return found

    def alias(self, model_path: str, name: str) -> Module | None:
        """The version alias ``name`` of the model at ``model_path`` points at, or None."""
        directory = self._model_directory(model_path)
        alias = (
            alias_store.get_alias(directory, name) if directory and alias_store.NAME.fullmatch(name) else None
        )
        return self.find(f"{'/'.join(self._parts(model_path) or [])}/{alias.version}") if alias else None

    def _model_directory(self, model_path: str) -> str | None:
        parts = self._parts(model_path)
        directory = os.path.realpath(os.path.join(self.root, *parts)) if parts else ""
        return directory if parts and self._inside(directory) and os.path.isdir(directory) else None

    def modules(self) -> list[Module]:
        out: dict[str, Module | None] = {}
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            if rel != "." and "saved_model.pb" in files:
                out[rel] = self.find(rel)
                dirs[:] = []  # a module's own subdirectories are not modules
                continue
            for name in sorted(files):
                if name.endswith(SUFFIX) and not name.startswith("."):
                    path = name[: -len(SUFFIX)] if rel == "." else f"{rel}/{name[: -len(SUFFIX)]}"
                    if path in out:
                        continue
                    full = os.path.join(dirpath, name)
                    if os.path.islink(full) or os.path.isdir(full[: -len(SUFFIX)]):
                        out[path] = self.find(path)  # the careful way: links, or a directory beside it
                    else:  # os.walk does not follow links: a plain file here is inside root
                        out[path] = Module(path, None, full)
        return sorted((m for m in out.values() if m), key=lambda m: m.path)

    def archive(self, module: Module) -> Archive:
        """The module's tar.gz (pre-packed, or packed once now) with its size and sha256.

        Packs are keyed by what the directory holds (its real path, every file's name, size and
        mtime), not by the URL path alone: another ROOT, or a changed module, never gets an old pack.
        """
        if module.archive:
            return self._describe(module.archive)
        if module.directory is None:
            raise FileNotFoundError(f"{module.path} has neither a directory nor an archive")
        target = (
            os.path.join(self.pack_dir, *module.path.split("/"))
            + f"-{_content_key(module.directory)}{SUFFIX}"
        )
        with self._lock:
            lock = self._locks.setdefault(target, threading.Lock())
        with lock:
            if not os.path.isfile(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                pack(module.directory, target)  # atomic: a temp name, then rename
        return self._describe(target)

    def _describe(self, file: str) -> Archive:
        st = os.stat(file)
        key = (file, st.st_size, st.st_mtime)
        digest = self._digests.get(key)
        if digest is None:
            sidecar = file + ".sha256"
            if os.path.isfile(sidecar) and os.path.getmtime(sidecar) >= st.st_mtime:
                with open(sidecar, encoding="utf-8") as f:
                    digest = f.read().split()[0]
            else:
                digest = file_sha256(file)
            self._digests[key] = digest
        return Archive(file, st.st_size, st.st_mtime, digest)


def _content_key(directory: str) -> str:
    """A digest of the directory's identity and content listing (cheap: stats, no reads)."""
    h = hashlib.sha256(os.path.realpath(directory).encode("utf-8", "surrogateescape"))
    for dirpath, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), directory)
            h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]
