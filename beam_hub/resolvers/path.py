"""Local directories and file:// URLs: used in place, nothing copied."""

from __future__ import annotations

import os

from beam_hub.cache.base import ModuleCache
from beam_hub.errors import ModuleNotFoundAtHandleError
from beam_hub.handles import Handle
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import require_saved_model_dir


class LocalDirResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        return handle.is_local and not handle.is_archive

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        path = handle.location
        if not os.path.exists(path):
            raise ModuleNotFoundAtHandleError(f"Module handle {handle.raw!r}: {path} does not exist.")
        require_saved_model_dir(path, handle.raw)
        return path
