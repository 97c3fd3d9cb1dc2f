"""What files make a SavedModel (or a TF1 Hub module), checked without importing TensorFlow."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator

from beam_hub.errors import NotASavedModelError

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TF1_HUB_MARKER = "tfhub_module.pb"
#: The files that say what a module is and does (its graphs, the TF1 Hub format's marker): all a
#: reader of signatures or an auditor needs, without variables or assets.
GRAPH_FILES = (*SAVED_MODEL_FILES, TF1_HUB_MARKER)
_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")
_MAX_WRAPPERS = 8  # folders a module may sit in at an archive's top (`tar czf m.tgz /tmp/export/model`)


def is_saved_model_dir(path: str) -> bool:
    """True when ``path`` is a directory holding saved_model.pb (or .pbtxt)."""
    return any(os.path.isfile(os.path.join(path, name)) for name in SAVED_MODEL_FILES)


def is_tf1_hub_module(path: str) -> bool:
    """True for the TF1 Hub format: a SavedModel with a ``tfhub_module.pb`` beside it."""
    return os.path.isfile(os.path.join(path, TF1_HUB_MARKER))


def structural_problems(path: str) -> list[str]:
    """Cheap checks that a SavedModel directory is whole: the graph file and every variable shard.

    Used for entries that carry no manifest (written by tensorflow_hub or by hand).
    """
    if not os.path.isdir(path):
        return [f"{path} is not a directory"]
    var_dir = os.path.join(path, "variables")
    return listing_problems(os.listdir(path), os.listdir(var_dir) if os.path.isdir(var_dir) else None)


def listing_problems(names: Collection[str], variables: Collection[str] | None) -> list[str]:
    """What a SavedModel directory lacks, from its listing: ``names`` in the directory itself,
    ``variables`` in its ``variables/`` (None when there is no such directory). A directory still
    being written (a TF Serving version mid-copy) has no graph file yet or misses variable shards."""
    problems = []
    if not set(names) & set(SAVED_MODEL_FILES):
        problems.append("saved_model.pb is missing")
    if variables is not None:
        found = set(variables)
        shards = [m for m in map(_SHARD.match, found) if m]
        if not found:
            problems.append("variables/ is empty")
        elif "variables.index" not in found:
            problems.append("variables/variables.index is missing")
        if "variables.index" in found and not shards:
            problems.append("variables/variables.data-* shards are missing")
        for total in {int(m.group(2)) for m in shards}:
            width = len(shards[0].group(1))
            for i in range(total):
                name = f"variables.data-{i:0{width}d}-of-{total:0{width}d}"
                if name not in found:
                    problems.append(f"variables/{name} is missing")
    return problems


def require_saved_model_dir(path: str, handle: str) -> None:
    """Raise NotASavedModelError naming what is there instead."""
    if is_saved_model_dir(path):
        return
    if not os.path.isdir(path):
        raise NotASavedModelError(f"Module handle {handle!r}: {path} is not a directory.")
    listing = sorted(os.listdir(path))[:10]
    raise NotASavedModelError(
        f"Module handle {handle!r} does not hold a SavedModel: no saved_model.pb in {path} "
        f"(found: {listing or 'nothing'}). Point the handle at the directory that contains "
        "saved_model.pb, or at a .tar.gz whose root is that directory."
    )


def module_root(dest: str, what: str) -> str:
    """The module root inside an extracted archive ``dest``: ``dest`` itself, or the folder that a
    chain of single top-level folders leads to (``tar czf m.tar.gz my_model/``; ``tar czf m.tar.gz
    /tmp/export`` stores ``tmp/export/...``). Dot files beside a folder (``.DS_Store``, macOS's
    ``._name``) do not count. Anything else (two or more top-level folders, no SavedModel)
    raises NotASavedModelError listing the top of the archive and how to pack it."""
    root = dest
    for _ in range(_MAX_WRAPPERS + 1):
        if is_saved_model_dir(root):
            return root
        entries = [e for e in os.listdir(root) if not e.startswith(".")]
        if len(entries) != 1 or not os.path.isdir(os.path.join(root, entries[0])):
            break
        root = os.path.join(root, entries[0])
    found = sorted(
        os.path.relpath(d, dest).replace(os.sep, "/") + "/"
        for d, _dirs, _files in _walk(dest, depth=_MAX_WRAPPERS)
        if d != dest and is_saved_model_dir(d)
    )
    where = f"; a SavedModel is in {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}" if found else ""
    raise NotASavedModelError(
        f"{what} holds no SavedModel at its top (saved_model.pb at the root, or inside its one "
        f"top-level folder): the top holds {_listing(dest)}{where}. Pack the directory that holds "
        "saved_model.pb so that its files are at the archive's root: tar -czf m.tar.gz -C DIR ."
    )


def _listing(path: str, limit: int = 10) -> str:
    names = sorted(e + "/" if os.path.isdir(os.path.join(path, e)) else e for e in os.listdir(path))
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _walk(top: str, depth: int) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk, at most ``depth`` levels below ``top``, directories in sorted order."""
    base = top.rstrip(os.sep).count(os.sep)
    for item in os.walk(top):
        item[1].sort()
        if item[0].count(os.sep) - base >= depth:
            item[1].clear()
        yield item
