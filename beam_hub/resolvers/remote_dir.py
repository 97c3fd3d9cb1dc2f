"""A SavedModel directory at any other fsspec URL (gs://, s3://, memory://, ...): copied into the cache."""

from __future__ import annotations

import os

import fsspec

from beam_hub.cache.base import Filled, ModuleCache
from beam_hub.errors import ModuleNotFoundAtHandleError, NotASavedModelError
from beam_hub.handles import Handle
from beam_hub.progress import download_callback
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import SAVED_MODEL_FILES

_IN_PROCESS = {"memory"}


class RemoteDirResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        if handle.is_local or handle.is_http or handle.is_archive:
            return False
        return handle.protocol in fsspec.available_protocols()

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        def fill(staging: str) -> Filled:
            fs, path = fsspec.core.url_to_fs(handle.location)
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
            callback = download_callback(handle.location)
            try:
                fs.get(path + "/", target + "/", recursive=True, callback=callback)
            finally:
                callback.close()
            return Filled(root=target, source=handle.location)

        return cache.fetch(handle.raw, fill, network=handle.protocol not in _IN_PROCESS)
