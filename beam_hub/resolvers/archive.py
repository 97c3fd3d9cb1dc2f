"""Archives (.tar.gz, .tgz, .tar) at a local path or any fsspec URL, extracted into the cache."""

from __future__ import annotations

import os

from beam_hub.archive import file_sha256, hoist_single_root, safe_extract
from beam_hub.cache.local import Filled, LocalCache
from beam_hub.download import download
from beam_hub.errors import IntegrityError, ModuleNotFoundAtHandleError
from beam_hub.handles import Handle
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import is_saved_model_dir


def extract_module(archive: str, staging: str, handle: Handle, source: str) -> Filled:
    """Check ``archive`` against the handle's pin, extract it safely under ``staging``."""
    digest = file_sha256(archive)
    if handle.sha256 and digest != handle.sha256:
        raise IntegrityError(
            f"{source} has sha256 {digest}, but the handle pins {handle.sha256}. The module "
            "changed or the download is corrupt; nothing was cached. Fix the pin if the new "
            "content is expected."
        )
    target = os.path.join(staging, "module")
    os.makedirs(target)
    safe_extract(archive, target, what=source)
    return Filled(root=hoist_single_root(target, is_saved_model_dir), source=source, archive_sha256=digest)


def fetch_archive(url: str, staging: str, handle: Handle) -> Filled:
    """Download ``url`` into ``staging`` (streamed, verified) and extract it there."""
    archive = os.path.join(staging, "archive")
    download(url, archive, what=url)
    return extract_module(archive, staging, handle, url)


class ArchiveResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        return handle.is_archive and not handle.is_http

    def __call__(self, handle: Handle, cache: LocalCache) -> str:
        if handle.is_local:
            if not os.path.isfile(handle.location):
                raise ModuleNotFoundAtHandleError(f"Module handle {handle.raw!r}: {handle.location} is not a file.")

            def fill(staging: str) -> Filled:
                return extract_module(handle.location, staging, handle, handle.location)

            return cache.fetch(handle.raw, fill, network=False)
        return cache.fetch(handle.raw, lambda staging: fetch_archive(handle.location, staging, handle))
