"""Publish a module: pack it reproducibly and upload it, as an immutable version, to any fsspec URL.

The version layout under a destination (what `beam-hub serve` reads and resolvers fetch):

    <dest>/<version>.tar.gz               the module, packed reproducibly (the handle)
    <dest>/<version>.tar.gz.sha256        "<sha256>  <version>.tar.gz", written after the archive
    <dest>/<version>.tar.gz.fingerprint   optional: what the version was made from (the re-export
                                          job's digest of base module, data and parameters)
    <dest>/<version>/                     optional: the extracted module (the uncompressed format)
    <dest>/.<version>.tar.gz.<uuid>.tmp   transient upload; never looks like a version

Versions are immutable: an existing one is never replaced.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from beam_hub.archive import pack
from beam_hub.download import filesystem
from beam_hub.errors import PublishError
from beam_hub.layout import SUFFIX, entries, numbers
from beam_hub.savedmodel import require_saved_model_dir

_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FINGERPRINT = ".fingerprint"
_MAX_FINGERPRINT_BYTES = 4096

__all__ = ["PublishError", "publish", "published_with"]


def published_with(dest: str, fingerprint: str) -> str | None:
    """The handle of the version under ``dest`` published with ``fingerprint``, if there is one."""
    dest = dest.rstrip("/")
    fs, root = filesystem(dest)
    names = set(entries(dest))
    for name in sorted(names):
        archive = name[: -len(_FINGERPRINT)]
        if name.endswith(SUFFIX + _FINGERPRINT) and archive in names:
            recorded = fs.cat_file(f"{root}/{name}", start=0, end=_MAX_FINGERPRINT_BYTES)
            if recorded.decode("utf-8", "replace").strip() == fingerprint:
                return f"{dest}/{archive}"
    return None


def publish(
    module_dir: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    version: int | str | None = None,
    extracted: bool = False,
    fingerprint: str | None = None,
    allow_risky: bool = False,
) -> str:
    """Pack ``module_dir`` and publish it as ``<dest>/<version>.tar.gz`` (plus ``.sha256``); return its handle.

    ``dest`` is any fsspec URL (a local directory, gs://bucket/models/name, ...) in the layout
    ``beam-hub serve`` reads. Versions are immutable: an existing version is never overwritten;
    with no ``version`` the next integer is used. The upload goes to a temporary name first and
    is then moved into place, so readers never see a half-written archive and a failed publish
    leaves the published versions as they were. ``extracted=True`` also uploads the module
    directory as ``<dest>/<version>/`` (a mirror for the protocol's uncompressed format), before
    the archive, so a version's archive never appears without it. ``fingerprint`` is recorded
    beside the version (see :func:`published_with`).

    The module is audited first (see :func:`beam_hub.audit`): high-severity findings (ops that
    write files, call Python or reach the network) stop the publish unless ``allow_risky=True``.
    """
    from beam_hub.safety import audit_path

    module_dir = os.fspath(module_dir)
    require_saved_model_dir(module_dir, module_dir)
    report = audit_path(module_dir)
    if report.high and not allow_risky:
        found = "\n  ".join(f.describe() for f in report.high)
        raise PublishError(
            f"Not publishing {module_dir}: the audit found ops that act outside the module's tensors:\n"
            f"  {found}\nIf the module is meant to do this, publish with allow_risky=True (--allow-risky)."
        )
    dest = os.fspath(dest).rstrip("/")
    fs, root = filesystem(dest)
    if version is None:
        taken = numbers(dest)  # TF Serving's <n>/ directories too: never a second module under one number
        version = max(taken) + 1 if taken else 1
    version = str(version)
    if not _VERSION_NAME.fullmatch(version):
        raise PublishError(f"Version {version!r} must be letters, digits, '.', '_' or '-'.")
    name = f"{version}{SUFFIX}"
    target = f"{root}/{name}"
    if fs.exists(target):
        raise PublishError(f"{dest}/{name} exists; published versions are immutable. Publish a new version.")
    if not extracted and fs.isdir(f"{root}/{version}"):
        raise PublishError(
            f"{dest}/{version}/ exists (a version directory, as TF Serving keeps them); published versions "
            "are immutable. Publish a new version."
        )
    with tempfile.TemporaryDirectory(prefix="beam-hub-publish-") as tmp:
        archive = os.path.join(tmp, name)
        digest = pack(module_dir, archive)
        sidecar = os.path.join(tmp, name + ".sha256")
        with open(sidecar, "w", encoding="utf-8") as f:
            f.write(f"{digest}  {name}\n")
        fs.makedirs(root, exist_ok=True)
        if extracted:
            _upload_directory(fs, module_dir, f"{root}/{version}")
        upload = f"{root}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            fs.put_file(archive, upload)
            if fs.exists(target):  # someone published this version meanwhile
                raise PublishError(
                    f"{dest}/{name} appeared while uploading; published versions are immutable."
                )
            _move_into_place(fs, upload, target)
        except FileExistsError:
            raise PublishError(
                f"{dest}/{name} appeared while uploading; published versions are immutable."
            ) from None
        finally:
            if fs.exists(upload):
                fs.rm(upload)
        fs.put_file(sidecar, f"{target}.sha256")  # after the archive: never beside another version's bytes
        if fingerprint is not None:
            fs.pipe_file(f"{target}{_FINGERPRINT}", fingerprint.encode())
    return f"{dest}/{name}"


def _upload_directory(fs: fsspec.AbstractFileSystem, module_dir: str, target: str) -> None:
    if fs.exists(target):
        raise PublishError(f"{target} exists; published versions are immutable. Publish a new version.")
    staging = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    try:
        fs.put(module_dir.rstrip("/") + "/", staging + "/", recursive=True)
        fs.mv(staging, target, recursive=True)
    finally:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)


def _move_into_place(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` without replacing an existing ``dst`` where the filesystem allows."""
    if isinstance(fs, LocalFileSystem):
        os.link(src, dst)  # fails if dst exists: create-if-absent
        os.unlink(src)
        return
    fs.mv(src, dst)
