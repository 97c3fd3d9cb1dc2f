"""A SavedModel directory at any other fsspec URL (gs://, s3://, memory://, ...): copied into the cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import fsspec

from beam_hub import settings
from beam_hub.archive import MAX_MEMBERS
from beam_hub.cache.base import Filled, ModuleCache
from beam_hub.download import filesystem
from beam_hub.errors import ModuleNotFoundAtHandleError, NotASavedModelError, UnsafePathError
from beam_hub.files import join_inside
from beam_hub.handles import Handle
from beam_hub.progress import download_callback
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import SAVED_MODEL_FILES

_IN_PROCESS = {"memory"}


def checked_listing(
    listing: Mapping[str, Mapping[str, Any]], path: str, target: str, handle: Handle
) -> tuple[list[str], list[str], int]:
    """(remote files, local paths under ``target``, total bytes) of a directory listing (full
    remote path -> info with its "size"), every listed name checked (an entry outside ``path`` or
    naming a place outside ``target`` is refused) and the listing held to the archive caps
    (member count, BEAM_HUB_MAX_EXTRACT_BYTES)."""
    if len(listing) > MAX_MEMBERS:
        raise UnsafePathError(
            f"Module handle {handle.raw!r}: {handle.location} holds more than {MAX_MEMBERS} files."
        )
    remote, local, total = [], [], 0
    prefix = path.rstrip("/") + "/"
    for full, info in sorted(listing.items()):
        try:
            if not full.startswith(prefix):
                raise ValueError(f"it is not inside {path}")
            local.append(join_inside(target, full[len(prefix) :]))
        except ValueError as e:
            raise UnsafePathError(
                f"Module handle {handle.raw!r}: the listing of {handle.location} names {full!r} ({e}); "
                "refusing to copy it."
            ) from None
        remote.append(full)
        total += _listed_size(info, full, handle)
    cap = settings.max_extract_bytes()
    if total > cap:
        raise UnsafePathError(
            f"Module handle {handle.raw!r}: {handle.location} holds {total} bytes, more than "
            f"BEAM_HUB_MAX_EXTRACT_BYTES={cap}. Raise it if the module really is that large."
        )
    for file in local:
        os.makedirs(os.path.dirname(file), exist_ok=True)
    return remote, local, total


def _listed_size(info: Mapping[str, Any], full: str, handle: Handle) -> int:
    """The size a listing gives a file: a whole number of bytes, never negative (a negative one
    would hide another file's bytes from the cap)."""
    size = info.get("size") or 0
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UnsafePathError(
            f"Module handle {handle.raw!r}: the listing of {handle.location} gives {full!r} the size "
            f"{size!r}; refusing to copy it."
        )
    return size


class RemoteDirResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        if handle.is_local or handle.is_http or handle.is_archive:
            return False
        return handle.protocol in fsspec.available_protocols()

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        def fill(staging: str) -> Filled:
            fs, path = filesystem(handle.location)
            path = path.rstrip("/")
            if not fs.isdir(path):
                raise ModuleNotFoundAtHandleError(
                    f"Module handle {handle.raw!r}: no directory at {handle.location}."
                )
            names = {os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
            if not names & set(SAVED_MODEL_FILES):
                raise NotASavedModelError(
                    f"Module handle {handle.raw!r}: no saved_model.pb in {handle.location} "
                    f"(found: {sorted(names)[:10] or 'nothing'}). Point it at the SavedModel directory."
                )
            target = os.path.join(staging, "module")
            remote, local, total = checked_listing(fs.find(path, detail=True), path, target, handle)
            callback = download_callback(handle.location)
            callback.set_size(total)
            try:
                fs.get(remote, local, callback=callback)
            finally:
                callback.close()
            return Filled(root=target, source=handle.location)

        return cache.fetch(handle.raw, fill, network=handle.protocol not in _IN_PROCESS)
