"""What `beam-hub serve` knows of its modules as a hub: models, their versions, cards, search.

A module at ``acme/fruit/3`` (a directory or ``acme/fruit/3.tar.gz``) is version ``3`` of the
model ``acme/fruit``; a module whose last path segment is not a version is a model with one
unnamed version. Cards are read once per file state (path, size, mtime) and kept, so listing and
searching a root of thousands of modules reads nothing twice.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from dataclasses import dataclass

from beam_hub.serve.card import Card, read_card, readme_of
from beam_hub.serve.store import Module, ModuleStore

PAGE_SIZE = 20
_VERSION = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Version:
    module: Module
    model: str  # e.g. "acme/fruit"
    name: str  # e.g. "3"; "" for a model without versions
    card: Card
    mtime: float
    size: int  # bytes: the archive, or the directory's files


@dataclass(frozen=True)
class Model:
    path: str
    versions: tuple[Version, ...]  # newest first

    @property
    def latest(self) -> Version:
        return self.versions[0]

    def matches(self, words: list[str], task: str, tag: str) -> bool:
        card = self.latest.card
        if task and card.task.lower() != task.lower():
            return False
        if tag and tag.lower() not in (t.lower() for t in card.tags):
            return False
        text = " ".join([self.path, card.title, card.task, *card.tags]).lower()
        return all(w in text for w in words)


@dataclass(frozen=True)
class Results:
    models: list[Model]  # this page
    total: int
    page: int
    pages: int
    tasks: list[tuple[str, int]]  # facet counts over every match
    tags: list[tuple[str, int]]


def split_version(path: str) -> tuple[str, str]:
    """``acme/fruit/3`` -> (``acme/fruit``, ``3``); ``acme/fruit`` -> (``acme/fruit``, "")."""
    model, _, last = path.rpartition("/")
    return (model, last) if model and _VERSION.match(last) else (path, "")


class Catalog:
    def __init__(self, store: ModuleStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[tuple, Version]] = {}  # path -> (stamp, version): one each

    def version(self, module: Module) -> Version:
        stamp = _stamp(module)
        with self._lock:
            known = self._versions.get(module.path)
        found = known[1] if known is not None and known[0] == stamp else None
        if found is None:
            model, name = split_version(module.path)
            readme = readme_of(module.directory, module.archive)
            card = read_card(readme or "", default_title=model)
            size = stamp[2] if stamp[2] >= 0 else _directory_size(stamp[0])
            found = Version(module, model, name, card, stamp[1], size)
            with self._lock:
                self._versions[module.path] = (stamp, found)
        return found

    def models(self) -> list[Model]:
        grouped: dict[str, list[Version]] = {}
        for module in self.store.modules():
            version = self.version(module)
            grouped.setdefault(version.model, []).append(version)
        return [Model(path, tuple(sorted(vs, key=_newest_first))) for path, vs in sorted(grouped.items())]

    def model(self, path: str) -> Model | None:
        path = path.strip("/")
        return next((m for m in self.models() if m.path == path), None)

    def search(self, q: str = "", task: str = "", tag: str = "", page: int = 1) -> Results:
        words = [w for w in q.lower().split() if w]
        everything = self.models()
        matched = [m for m in everything if m.matches(words, "", "")]
        tasks = Counter(m.latest.card.task for m in matched if m.latest.card.task)
        tags = Counter(t for m in matched for t in set(m.latest.card.tags))
        hits = [m for m in matched if m.matches([], task, tag)]
        pages = max(1, -(-len(hits) // PAGE_SIZE))
        page = min(max(1, page), pages)
        return Results(
            models=hits[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            total=len(hits),
            page=page,
            pages=pages,
            tasks=sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0])),
            tags=sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:30],
        )


def _newest_first(v: Version) -> tuple:
    return (0, -int(v.name), "") if _VERSION.match(v.name) else (1, 0, v.name)


def _stamp(module: Module) -> tuple[str, float, int]:
    """What identifies a module's content state cheaply: for an archive its stat; for a directory
    the newest mtime of the directory, its graph, README and variables (the size, from a walk of
    every file, is computed when this stamp is new)."""
    if module.archive and not module.directory:
        st = os.stat(module.archive)
        return (module.archive, st.st_mtime, st.st_size)
    directory = module.directory or ""
    mtime = 0.0
    for name in ("", "saved_model.pb", "README.md", "variables", "assets"):
        try:
            mtime = max(mtime, os.stat(os.path.join(directory, name)).st_mtime)
        except OSError:
            pass
    return (directory, mtime, -1)


def _directory_size(directory: str) -> int:
    return sum(
        os.stat(os.path.join(dirpath, name)).st_size
        for dirpath, _dirs, files in os.walk(directory)
        for name in files
    )
