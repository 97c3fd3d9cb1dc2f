"""Resolvers, one per protocol family, behind a registry: the first that supports a handle wins."""

from __future__ import annotations

import os

from beam_hub.aliases import resolve_alias
from beam_hub.cache import open_cache
from beam_hub.handles import parse_handle
from beam_hub.resolvers.archive import ArchiveResolver
from beam_hub.resolvers.base import Resolver
from beam_hub.resolvers.builtin import BuiltinResolver
from beam_hub.resolvers.http import HttpResolver
from beam_hub.resolvers.huggingface import HuggingFaceResolver, pin
from beam_hub.resolvers.kaggle import KaggleResolver
from beam_hub.resolvers.path import LocalDirResolver
from beam_hub.resolvers.registry import (
    register_resolver,
    registered_resolvers,
    resolve_in,
    unregister_resolver,
)
from beam_hub.resolvers.remote_dir import RemoteDirResolver
from beam_hub.urls import protocol

for _builtin in (
    BuiltinResolver(),
    KaggleResolver(),
    HuggingFaceResolver(),
    HttpResolver(),
    ArchiveResolver(),
    LocalDirResolver(),
    RemoteDirResolver(),
):
    register_resolver(_builtin, first=False)


def resolve(
    handle: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    local_cache_dir: str | os.PathLike | None = None,
) -> str:
    """Return a local directory holding the module ``handle`` points at.

    Handles: a local directory or ``file://`` URL (used in place); a ``.tar.gz``/``.tgz``/``.tar``
    at a local path or any fsspec URL (extracted into the cache); a directory at any other fsspec
    URL such as ``gs://`` (copied into the cache); an ``http(s)://`` URL served with the TF Hub
    protocol (``?tf-hub-format=compressed``); Kaggle Models (``kaggle://O/M/F/V/N`` and kaggle.com
    URLs); ``hf://ORG/REPO[@REVISION][/SUBDIR]`` on the Hugging Face Hub. ``cache_dir`` defaults to ``TFHUB_CACHE_DIR``, else
    ``~/.cache/beam_hub``; a remote ``cache_dir`` (``gs://bucket/prefix``) is a cache shared by
    every machine, in front of a local one at ``local_cache_dir`` (else BEAM_HUB_LOCAL_CACHE_DIR).
    ``DEST@latest`` and ``DEST@NAME`` resolve to the version they name (see :mod:`beam_hub.aliases`).
    Safe to call from many processes, on many machines, at once.
    """
    return resolve_in(parse_handle(resolve_alias(handle)), open_cache(cache_dir, local_cache_dir))


def resolve_version(handle: str | os.PathLike) -> str:
    """The concrete handle a moving name stands for now: ``DEST@latest`` -> DEST's newest version;
    ``DEST@NAME`` -> the version alias NAME points at; a Hugging Face branch or tag (``hf://org/repo[@main][/SUBDIR]``) -> ``hf://org/repo@<commit>[/SUBDIR]``
    (unchanged offline or when the Hub cannot be reached); any other handle as given. Pipelines
    call it once, on the launcher, so that every worker applies the same version."""
    raw = resolve_alias(handle)
    return pin(raw) if protocol(raw) == "hf" else raw


__all__ = [
    "Resolver",
    "register_resolver",
    "registered_resolvers",
    "resolve",
    "resolve_in",
    "resolve_version",
    "unregister_resolver",
]
