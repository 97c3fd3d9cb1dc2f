"""Archives (.tar.gz, .tgz, .tar) at a local path or any fsspec URL, extracted into the cache."""

from __future__ import annotations

import os
import shutil

from beam_hub.archive import ExtractedFiles, safe_extract
from beam_hub.cache.base import Accept, Filled, ModuleCache
from beam_hub.download import stream
from beam_hub.errors import IntegrityError, ModuleNotFoundAtHandleError
from beam_hub.handles import Handle
from beam_hub.resolvers.base import Resolver
from beam_hub.savedmodel import module_root
from beam_hub.sinks import ExtractingSink


def _finish(extracted: ExtractedFiles, target: str, handle: Handle, source: str) -> Filled:
    """Check the archive against the handle's pin; find the module root (see :func:`module_root`)."""
    if handle.sha256 and extracted.archive_sha256 != handle.sha256:
        raise IntegrityError(
            f"{source} has sha256 {extracted.archive_sha256}, but the handle pins {handle.sha256}. "
            "The module changed or the download is corrupt; nothing was cached. Fix the pin if "
            "the new content is expected."
        )
    root = module_root(target, source)
    prefix = "" if root == target else os.path.relpath(root, target).replace(os.sep, "/") + "/"
    files = {rel[len(prefix) :]: meta for rel, meta in extracted.files.items() if rel.startswith(prefix)}
    return Filled(root=root, source=source, archive_sha256=extracted.archive_sha256, files=files)


def extract_local(archive: str, staging: str, handle: Handle) -> Filled:
    """Extract a local archive safely under ``staging``."""
    target = os.path.join(staging, "module")
    os.makedirs(target)
    return _finish(safe_extract(archive, target, what=archive), target, handle, archive)


def fetch_archive(url: str, staging: str, handle: Handle, headers: dict[str, str] | None = None) -> Filled:
    """Download ``url`` and extract it under ``staging`` as the bytes arrive.

    The archive is checked against a sha256 the server announces (an ETag that is a sha256, as
    `beam-hub serve` sends) and against the handle's ``#sha256=`` pin.
    """
    target = os.path.join(staging, "module")

    def open_sink() -> ExtractingSink:
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        return ExtractingSink(target, what=url)

    received = stream(url, open_sink, what=url, headers=headers)
    extracted = received.sink.extracted
    if received.etag_sha256 and received.etag_sha256 != extracted.archive_sha256:
        raise IntegrityError(
            f"{url}: the archive's sha256 is {extracted.archive_sha256}, but the server's ETag says "
            f"{received.etag_sha256}. The download is corrupt or the content changed mid-way; nothing was cached."
        )
    return _finish(extracted, target, handle, url)


def pinned(handle: Handle) -> Accept | None:
    """For a ``#sha256=`` handle: accept only cache entries whose recorded archive has that sha256."""
    if handle.sha256 is None:
        return None
    pin = handle.sha256
    return lambda manifest: manifest.archive_sha256 == pin


class ArchiveResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        return handle.is_archive and not handle.is_http

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        if handle.is_local:
            if not os.path.isfile(handle.location):
                raise ModuleNotFoundAtHandleError(
                    f"Module handle {handle.raw!r}: {handle.location} is not a file."
                )

            def fill(staging: str) -> Filled:
                return extract_local(handle.location, staging, handle)

            return cache.fetch(handle.raw, fill, network=False, accept=pinned(handle))
        return cache.fetch(
            handle.raw, lambda staging: fetch_archive(handle.location, staging, handle), accept=pinned(handle)
        )
