"""beam-hub: TF Hub-style modules for batch data processing.

Importing this package does not import TensorFlow or Apache Beam: ``load`` and ``HubModule`` are
imported on first use, so ``beam_hub.resolve`` and the cache commands start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from beam_hub import errors
from beam_hub.alias_store import Alias, get_alias, list_aliases, remove_alias, set_alias
from beam_hub.archive import pack
from beam_hub.cache import LocalCache
from beam_hub.handles import Handle, parse_handle
from beam_hub.publish import publish
from beam_hub.resolvers import (
    Resolver,
    register_resolver,
    registered_resolvers,
    resolve,
    resolve_version,
    unregister_resolver,
)

__version__ = "0.1.0"

_LAZY = {
    "audit": "beam_hub.auditing",
    "AuditReport": "beam_hub.safety",
    "load": "beam_hub.module",
    "HubModule": "beam_hub.module",
    "SignatureSpec": "beam_hub.signatures",
    "ApplyHubModule": "beam_hub.beam",
    "FailedElement": "beam_hub.beam",
    "HubModelHandler": "beam_hub.beam",
    "FineTuneHubModule": "beam_hub.train.transforms",
    "KerasLayer": "beam_hub.keras_layer",
    "HubTextEmbeddings": "beam_hub.beam.mltransform",
    "HubImageEmbeddings": "beam_hub.beam.mltransform",
    "ExportHubModule": "beam_hub.train.transforms",
    "WatchVersions": "beam_hub.beam.watch",
}

if TYPE_CHECKING:  # pragma: no cover
    from beam_hub.auditing import audit
    from beam_hub.beam import ApplyHubModule, FailedElement, HubModelHandler
    from beam_hub.beam.mltransform import HubImageEmbeddings, HubTextEmbeddings
    from beam_hub.beam.watch import WatchVersions
    from beam_hub.keras_layer import KerasLayer
    from beam_hub.module import HubModule, load
    from beam_hub.safety import AuditReport
    from beam_hub.signatures import SignatureSpec
    from beam_hub.train.transforms import ExportHubModule, FineTuneHubModule


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'beam_hub' has no attribute {name!r}")


__all__ = [
    "Alias",
    "AuditReport",
    "audit",
    "ApplyHubModule",
    "ExportHubModule",
    "FailedElement",
    "FineTuneHubModule",
    "HubImageEmbeddings",
    "HubModelHandler",
    "HubTextEmbeddings",
    "KerasLayer",
    "Handle",
    "HubModule",
    "LocalCache",
    "Resolver",
    "SignatureSpec",
    "errors",
    "get_alias",
    "list_aliases",
    "load",
    "pack",
    "parse_handle",
    "publish",
    "register_resolver",
    "registered_resolvers",
    "remove_alias",
    "resolve",
    "resolve_version",
    "set_alias",
    "unregister_resolver",
    "WatchVersions",
]
