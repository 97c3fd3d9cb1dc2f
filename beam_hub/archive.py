"""The one place for tar rules: safe extraction of downloaded modules and reproducible packing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from beam_hub import settings
from beam_hub.errors import IntegrityError, UnsafeArchiveError
from beam_hub.files import PATH_MAX, PRIVATE_FILES, FileRecord, FileRecords, file_sha256, relative_name

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
MAX_MEMBERS = 100_000  # SavedModels hold a handful of files; vocabularies and shards a few thousand
DISK_BLOCK = 4096  # what a file costs on disk at the least
MAX_TRAILING_BYTES = 1 << 20  # raw bytes after the tar's end (gzip tail, record padding) we read
_CHUNK = 1 << 20
_HEADER_LIMITS = {  # extended header type -> largest size read
    tarfile.XHDTYPE: 64 << 10,
    tarfile.XGLTYPE: 64 << 10,
    tarfile.SOLARIS_XHDTYPE: 64 << 10,
    tarfile.GNUTYPE_LONGNAME: PATH_MAX + 1,
    tarfile.GNUTYPE_LONGLINK: PATH_MAX + 1,
}
_HEADER_KINDS = {
    tarfile.XHDTYPE: "pax",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "pax",
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link",
}


def is_archive_name(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def sniff(head: bytes, what: str) -> None:
    """Raise IntegrityError unless ``head`` (the first 512 bytes) starts a tar, gzip, bzip2 or xz file."""
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return
    if len(head) >= 262 and head[257:262] == b"ustar":
        return
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise IntegrityError(
            f"{what} returned an HTML page, not a module archive. Check that the URL serves the "
            "TF Hub protocol (?tf-hub-format=compressed gives a tar.gz), and that no login or "
            "proxy page is in the way."
        )
    if not head:
        raise IntegrityError(f"{what} returned an empty body, not a module archive.")
    raise IntegrityError(
        f"{what} is not a tar or tar.gz archive (starts with {head[:16]!r}). A module archive is "
        "a tar.gz whose root is the SavedModel directory (`beam-hub pack DIR OUT.tar.gz` makes one)."
    )


class _HashingReader(io.RawIOBase):
    """Read-through wrapper that hashes every byte read, after replaying ``head`` first."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.head = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
        return n

    def peek_head(self, size: int = 512) -> bytes:
        """Read up to ``size`` bytes (fewer only at EOF) and keep them to be read again."""
        chunks, got = [], 0
        while got < size:
            buf = bytearray(size - got)
            n = self.readinto(buf)
            if not n:
                break
            chunks.append(bytes(buf[:n]))
            got += n
        self.head = b"".join(chunks)
        return self.head


class _Budget:
    """What an extraction may cost: bytes of headers, disk blocks of files and directories, members.

    Every member is charged its header block, its extended headers (pax, GNU long names) and the
    disk blocks it will take (at least one), so a flood of empty files or a huge header hits the
    cap as surely as one huge file.
    """

    def __init__(self, cap: int, what: str) -> None:
        self.cap = cap
        self.what = what
        self.spent = 0
        self.members = 0

    def charge(self, nbytes: int) -> None:
        self.spent += nbytes
        if self.spent > self.cap:
            raise UnsafeArchiveError(
                f"{self.what} expands to more than {self.cap} bytes (file contents, disk blocks and "
                "headers); refusing (a decompression bomb?). Raise BEAM_HUB_MAX_EXTRACT_BYTES if the "
                "module really is that large."
            )

    def member(self, size: int) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise UnsafeArchiveError(f"{self.what}: more than {MAX_MEMBERS} members; refusing to extract.")
        self.charge(tarfile.BLOCKSIZE + _round_up(max(size, 1), DISK_BLOCK))


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def _capped_tarinfo(budget: _Budget) -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized extended headers before tarfile reads them into memory."""

    class CappedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            limit = _HEADER_LIMITS.get(self.type)
            if limit is not None:
                if self.size > limit:
                    raise UnsafeArchiveError(
                        f"{budget.what}: a {_HEADER_KINDS[self.type]} header of {self.size} bytes (the "
                        f"limit is {limit}); refusing the archive."
                    )
                budget.charge(tarfile.BLOCKSIZE + _round_up(self.size, tarfile.BLOCKSIZE))
            return super()._proc_member(tarfile_)

    return CappedTarInfo


def safe_extract(
    source: str | os.PathLike | BinaryIO, dest: str, *, what: str, max_bytes: int | None = None
) -> ExtractedFiles:
    """Extract an archive (a path, or a binary stream read once to its end) into ``dest`` in one
    streaming pass; return the archive's sha256 and the size and sha256 of every file written.

    Every member name is checked (``files.relative_name``: relative, no ``..``, no NUL, within
    the OS's length limits) and goes through tarfile's ``data`` filter; links, special files and
    sparse files are refused, as is a name that is both a file and a directory. The budget
    ``max_bytes`` (default BEAM_HUB_MAX_EXTRACT_BYTES) counts file contents rounded up to disk
    blocks, one block per member and every header byte; extended headers are capped before they
    are read, so memory stays bounded. beam-hub's private files (a shipped cache manifest) are
    skipped. On error ``dest`` may hold a partial tree: callers extract into a staging directory
    they delete on failure.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=_CHUNK) as f:
            return safe_extract(f, dest, what=what, max_bytes=max_bytes)
    reader = _HashingReader(source)
    sniff(reader.peek_head(), what)
    budget = _Budget(settings.max_extract_bytes() if max_bytes is None else max_bytes, what)
    dest = os.path.abspath(dest)
    files: FileRecords = {}
    try:
        stream = io.BufferedReader(reader, _CHUNK)
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_capped_tarinfo(budget)) as tar:
            for member in tar:
                rel = _check_member(member, dest, what)
                budget.member(member.size if member.isfile() else 0)
                if rel in PRIVATE_FILES:
                    continue  # e.g. `tar czf` of a cache entry: ours is written after extraction
                try:
                    target = os.path.join(dest, *rel.split("/"))
                    if member.isdir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    files[rel] = _write_member(tar.extractfile(member), target, member, what)
                except (FileExistsError, IsADirectoryError, NotADirectoryError) as e:
                    raise UnsafeArchiveError(
                        f"{what}: member {member.name!r} is both a file and a directory ({e.strerror}); "
                        "refusing the archive."
                    ) from None
            trailing = 0
            while chunk := reader.read(_CHUNK):  # hash trailing padding too: the digest covers the file
                trailing += len(chunk)
                if trailing > MAX_TRAILING_BYTES:
                    raise UnsafeArchiveError(
                        f"{what} goes on for more than {MAX_TRAILING_BYTES} bytes after the archive's end; "
                        "refusing it (a real archive ends with a little padding)."
                    )
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise IntegrityError(f"{what} is truncated or corrupt ({type(e).__name__}: {e}).") from e
    return ExtractedFiles(reader.sha256.hexdigest(), dict(sorted(files.items())))


@dataclass
class ExtractedFiles:
    archive_sha256: str
    files: FileRecords


def _check_member(member: tarfile.TarInfo, dest: str, what: str) -> str:
    """The member's checked relative name; UnsafeArchiveError naming it if it must not be extracted."""
    try:
        rel = relative_name(member.name)
    except ValueError as e:
        raise UnsafeArchiveError(
            f"{what}: unsafe member {member.name[:300]!r}: {e}; refusing the archive."
        ) from None
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{what}: member {member.name!r} is a link (to {member.linkname!r}); module "
            "archives must hold plain files and directories only."
        )
    if not (member.isfile() or member.isdir()) or member.type == tarfile.GNUTYPE_SPARSE or member.sparse:
        raise UnsafeArchiveError(
            f"{what}: member {member.name!r} is a device, FIFO, sparse or other special file; refused."
        )
    try:
        tarfile.data_filter(member, dest)
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"{what}: unsafe member {member.name!r}: {e}") from None
    return rel


def _write_member(src: BinaryIO | None, target: str, member: tarfile.TarInfo, what: str) -> FileRecord:
    digest = hashlib.sha256()
    written = 0
    with open(target, "wb") as out:
        while src is not None and (chunk := src.read(_CHUNK)):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if written != member.size:
        raise IntegrityError(
            f"{what}: member {member.name!r} is cut short ({written} of {member.size} bytes)."
        )
    os.chmod(target, (member.mode or 0o644) & 0o755 | 0o600)
    return FileRecord(written, digest.hexdigest())


def hoist_single_root(dest: str, is_module: Callable[[str], bool]) -> str:
    """Return the module root inside ``dest``: ``dest`` itself, or its only subdirectory when the
    archive wrapped the module in one top-level folder."""
    if is_module(dest):
        return dest
    entries = [e for e in os.listdir(dest) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])):
        inner = os.path.join(dest, entries[0])
        if is_module(inner):
            return inner
    return dest


def _members(src_dir: str) -> list[tuple[str, str]]:
    """(archive name, absolute path) of every directory and file, sorted, private files skipped."""
    out = []
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        rel_root = os.path.relpath(root, src_dir)
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            rel = name if rel_root == "." else f"{rel_root}/{name}".replace(os.sep, "/")
            if rel in PRIVATE_FILES:
                continue
            if os.path.islink(full):
                raise UnsafeArchiveError(
                    f"{full} is a symbolic link; a module archive holds plain files only. "
                    "Copy the target into the module directory instead."
                )
            out.append((rel, full))
    out.sort(key=lambda item: item[0])
    return out


def pack(src_dir: str, out_path: str, *, mtime: int | None = None, compresslevel: int = 6) -> str:
    """Pack ``src_dir`` into a reproducible tar.gz at ``out_path`` and return its sha256.

    Reproducible: members sorted by name, uid/gid 0 with empty owner names, modes normalised to
    0644/0755, every mtime set to ``mtime`` (default $SOURCE_DATE_EPOCH or 0), and a gzip header
    with mtime 0 and no file name. The same directory content always gives the same bytes.
    The archive is written beside ``out_path`` and renamed into place, so a failed pack never
    leaves a half-written file under the final name.
    """
    if not os.path.isdir(src_dir):
        raise NotADirectoryError(f"{src_dir} is not a directory; `pack` takes a module directory.")
    if mtime is None:
        mtime = settings.source_date_epoch()
    out_path = os.path.abspath(out_path)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = f"{out_path}.{uuid.uuid4().hex}.tmp"
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, full in _members(src_dir):
                st = os.stat(full)
                info = tarfile.TarInfo(name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = mtime
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    info.size = st.st_size
                    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return file_sha256(out_path)
