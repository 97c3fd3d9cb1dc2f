"""Numbered versions under a destination (any fsspec URL), as beam-hub and TF production write them.

    DEST/1.tar.gz            `beam-hub publish`: the module packed (1.tar.gz.sha256 beside it)
    DEST/2/saved_model.pb    TF Serving's and TFX Pusher's layout: one SavedModel directory per
    DEST/2/variables/...     version, named by an integer (the Pusher uses the push time)
    DEST/3/variables/...     still being written (no saved_model.pb yet, or variables/ missing a
                             shard): not a version until it is whole

``latest(DEST)`` is the handle of the highest whole version: an archive is whole once it exists
(publish moves it into place complete); a directory when its listing holds saved_model.pb and,
if it has variables/, the index and every shard. A number present in both forms is the archive.
"""

from __future__ import annotations

import logging
import os
import re

from beam_hub.download import filesystem
from beam_hub.errors import ModuleNotFoundAtHandleError
from beam_hub.savedmodel import listing_problems

log = logging.getLogger(__name__)

SUFFIX = ".tar.gz"
_ARCHIVE_VERSION = re.compile(r"^(\d+)\.tar\.gz$")


def entries(dest: str) -> dict[str, bool]:
    """Name -> is-a-directory for everything directly under ``dest`` (empty when it does not exist)."""
    fs, root = filesystem(dest)
    try:
        listing = fs.ls(root.rstrip("/"), detail=True)
    except FileNotFoundError:
        return {}
    return {os.path.basename(e["name"].rstrip("/")): e.get("type") == "directory" for e in listing}


def versions(dest: str) -> list[int]:
    """Integer versions published under ``dest`` as archives (``<n>.tar.gz``)."""
    return sorted(int(m.group(1)) for m in map(_ARCHIVE_VERSION.match, entries(dest)) if m)


def numbers(dest: str) -> set[int]:
    """Every integer version name under ``dest``, whole or not, archive or directory (the next
    version to publish comes after all of them)."""
    found = entries(dest)
    return set(versions(dest)) | {int(name) for name, is_dir in found.items() if is_dir and name.isdigit()}


def latest(dest: str) -> str:
    """The handle of the highest whole version under ``dest``: ``DEST/<n>.tar.gz`` or ``DEST/<n>``."""
    dest = dest.rstrip("/")
    found = entries(dest)
    archives = {int(m.group(1)) for m in map(_ARCHIVE_VERSION.match, found) if m}
    directories = {int(name) for name, is_dir in found.items() if is_dir and name.isdigit()}
    skipped: list[str] = []
    for number in sorted(archives | directories, reverse=True):
        if number in archives:
            return f"{dest}/{number}{SUFFIX}"
        problems = _directory_problems(f"{dest}/{number}")
        if not problems:
            if skipped:
                log.warning("%s@latest is version %d; skipped %s", dest, number, "; ".join(skipped))
            return f"{dest}/{number}"
        skipped.append(f"{number}/ ({problems[0]}: still being written?)")
    what = (
        f"no whole version under {dest} ({'; '.join(skipped[:3])})"
        if skipped
        else f"no version is published under {dest}"
    )
    raise ModuleNotFoundAtHandleError(
        f"{dest}@latest: {what}. Versions are <n>{SUFFIX} (written by `beam-hub publish`) or <n>/ "
        "directories holding a SavedModel (as TF Serving and TFX's Pusher keep them)."
    )


def version_handle(dest: str, version: str) -> str:
    """The handle of version ``version`` under ``dest`` (``DEST/<v>.tar.gz``, else a whole
    ``DEST/<v>/`` SavedModel directory); ModuleNotFoundAtHandleError when it is neither."""
    dest = dest.rstrip("/")
    found = entries(dest)
    if f"{version}{SUFFIX}" in found:
        return f"{dest}/{version}{SUFFIX}"
    if found.get(version):
        problems = _directory_problems(f"{dest}/{version}")
        if not problems:
            return f"{dest}/{version}"
        raise ModuleNotFoundAtHandleError(f"{dest}/{version}/ is not a whole version ({problems[0]}).")
    raise ModuleNotFoundAtHandleError(
        f"{dest} has no version {version!r} (versions: {', '.join(map(str, sorted(numbers(dest)))) or 'none'})."
    )


def _directory_problems(path: str) -> list[str]:
    names = entries(path)
    variables = entries(f"{path}/variables") if names.get("variables") else None
    return listing_problems(names, variables)
