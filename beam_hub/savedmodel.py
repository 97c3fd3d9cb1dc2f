"""What files make a SavedModel (or a TF1 Hub module), checked without importing TensorFlow."""

from __future__ import annotations

import os
import re
from collections.abc import Collection

from beam_hub.errors import NotASavedModelError

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TF1_HUB_MARKER = "tfhub_module.pb"
_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")


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
