"""The one place for tar rules: safe extraction of downloaded modules and reproducible packing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

from beam_hub import settings
from beam_hub.compression import FORMATS, CorruptStreamError, decompressing
from beam_hub.errors import IntegrityError, UnsafeArchiveError
from beam_hub.files import PATH_MAX, PRIVATE_FILES, FileRecord, FileRecords, file_sha256, relative_name

#: Names of the archives a handle may point at: tar, optionally gzip-, bzip2- or xz-compressed.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar")
MAX_MEMBERS = 100_000  # SavedModels hold a handful of files; vocabularies and shards a few thousand
DISK_BLOCK = 4096  # what a file costs on disk at the least
MAX_TRAILING_BYTES = 1 << 20  # bytes after the tar's end (record padding, bytes after the stream) we read
MAX_SPARSE_REGIONS = 1 << 16  # data regions of one sparse file (GNU tar -S writes one per run of data)
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
    """Raise IntegrityError unless ``head`` (the first 512 bytes) starts a tar, gzip, bzip2 or xz file
    (what tarfile reads, and tensorflow_hub with it); name zstd and zip, which it does not."""
    if any(head.startswith(magic) for magic in FORMATS):
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
    kind = {
        b"\x28\xb5\x2f\xfd": "zstd-compressed (Python's tarfile cannot read zstd)",
        b"PK\x03\x04": "a zip file",
    }
    found = kind.get(head[:4], f"starts with {head[:16]!r}")
    raise IntegrityError(
        f"{what} is not a tar archive (gzip, bzip2, xz or none): it is {found}. A module archive is "
        "a tar.gz whose root is the SavedModel directory: tar -czf m.tar.gz -C DIR . "
        "(or `beam-hub pack DIR m.tar.gz`)."
    )


class _HashingReader(io.RawIOBase):
    """Read-through wrapper that hashes every byte read, after replaying ``head`` first."""

    def __init__(self, raw: IO[bytes] | io.RawIOBase) -> None:
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
        readinto = getattr(self.raw, "readinto", None)  # files, sockets, fsspec files have it
        if readinto is not None:
            n = readinto(buffer)
        else:  # any other binary stream: read, then copy
            data = self.raw.read(len(buffer))
            n = len(data)
            buffer[:n] = data
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
    """A TarInfo class that refuses oversized extended headers and sparse maps before tarfile
    reads them into memory, and charges what they cost to ``budget``."""

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
            return super()._proc_member(tarfile_)  # type: ignore[misc]  # CPython tarfile hook

        # GNU tar -S writes sparse files in one of two ways that keep their map of data regions
        # outside any header size: the old GNU format's extension blocks, and the PAX 1.0 format's
        # map at the start of the data. tarfile reads either until it ends; these do the same, as
        # CPython 3.10-3.13 do, but charge every block and stop at MAX_SPARSE_REGIONS regions.

        def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            # the 4 regions in the header itself (set by CPython tarfile._proc_member)
            structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
            del self._sparse_structs  # type: ignore[attr-defined]
            while isextended:
                buf = _read_block(tarfile_, budget)
                for pos in range(0, 21 * 24, 24):
                    try:
                        offset = tarfile.nti(buf[pos : pos + 12])  # type: ignore[attr-defined]
                        numbytes = tarfile.nti(buf[pos + 12 : pos + 24])  # type: ignore[attr-defined]
                    except ValueError:
                        break
                    if offset and numbytes:
                        structs.append((offset, numbytes))
                _check_regions(len(structs), budget.what)
                isextended = bool(buf[504])
            self.sparse = structs
            self.offset_data = tarfile_.fileobj.tell()
            tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
            self.size = origsize
            return self

        def _proc_gnusparse_10(
            self, next_: tarfile.TarInfo, pax_headers: dict, tarfile_: tarfile.TarFile
        ) -> None:
            buf = _read_block(tarfile_, budget)
            count, _, buf = buf.partition(b"\n")
            if not count.isdigit():
                raise _malformed_map(budget.what)
            _check_regions(int(count), budget.what)
            numbers: list[int] = []
            while len(numbers) < 2 * int(count):
                if b"\n" not in buf:
                    if len(buf) > 64:  # a decimal offset is at most 20 digits
                        raise _malformed_map(budget.what)
                    buf += _read_block(tarfile_, budget)
                number, _, buf = buf.partition(b"\n")
                if not number.isdigit():
                    raise _malformed_map(budget.what)
                numbers.append(int(number))
            next_.offset_data = tarfile_.fileobj.tell()
            next_.sparse = list(zip(numbers[::2], numbers[1::2]))  # type: ignore[assignment]  # as CPython stores it

    return CappedTarInfo


def _read_block(tarfile_: tarfile.TarFile, budget: _Budget) -> bytes:
    budget.charge(tarfile.BLOCKSIZE)
    buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
    if len(buf) != tarfile.BLOCKSIZE:
        raise tarfile.ReadError("unexpected end of data in a sparse file's map")
    return buf


def _malformed_map(what: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{what}: a sparse file's map is malformed; refusing the archive.")


def _check_regions(count: int, what: str) -> None:
    if count > MAX_SPARSE_REGIONS:
        raise UnsafeArchiveError(
            f"{what}: a sparse file with more than {MAX_SPARSE_REGIONS} data regions; refusing the archive."
        )


def safe_extract(
    source: str | os.PathLike[str] | IO[bytes] | io.RawIOBase,
    dest: str,
    *,
    what: str,
    max_bytes: int | None = None,
    keep: Callable[[str], bool] | None = None,
) -> ExtractedFiles:
    """Extract an archive (a path, or a binary stream read once to its end) into ``dest`` in one
    streaming pass; return the archive's sha256 and the size and sha256 of every file written.

    It reads what tar, bsdtar and Python's ``tarfile`` write (gnu, ustar, pax; gzip, bzip2, xz
    or none) as tar extracts it: the root directory member (``.`` or ``./``, as ``tar -C DIR .``
    writes it) is ``dest`` itself and ``./`` prefixes are dropped; a file may come before its
    directory; sparse files (``tar -S``) are written out whole; a member named twice (an archive
    appended to) is written again, so the last copy wins; a hard link to a file the archive
    already wrote (how tar stores a file it meets twice: a directory listed again, two names for
    one file) is extracted as a copy of it.

    Every other name is checked (``files.relative_name``: relative, no ``..``, no NUL, within the
    OS's length limits) and goes through tarfile's ``data`` filter; symbolic links, any other
    hard link and special files are refused, as is a name that is both a file and a directory.
    The budget ``max_bytes`` (default BEAM_HUB_MAX_EXTRACT_BYTES) counts file contents (a sparse
    file's whole size) rounded up to disk blocks, one block per member and every header byte;
    extended headers and sparse maps are capped before they are read, and compressed streams
    are decompressed in bounded pieces, so memory stays bounded. beam-hub's private files (a
    shipped cache manifest) are skipped. On error ``dest`` may hold a partial tree: callers
    extract into a staging directory they delete on failure.

    ``keep`` (a relative name -> bool) writes only the files it accepts: every member is still
    read, checked and counted, and the others are listed with their size and an empty sha256
    (their content is not hashed). A kept hard link to a file not kept is refused.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=_CHUNK) as f:
            return safe_extract(f, dest, what=what, max_bytes=max_bytes, keep=keep)
    reader = _HashingReader(source)
    head = reader.peek_head()
    sniff(head, what)
    budget = _Budget(settings.max_extract_bytes() if max_bytes is None else max_bytes, what)
    dest = os.path.abspath(dest)
    files: FileRecords = {}
    raw = io.BufferedReader(reader, _CHUNK)
    streams = decompressing(raw, head)
    stream = io.BufferedReader(streams, _CHUNK) if streams else raw
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_capped_tarinfo(budget)) as tar:
            for member in tar:
                rel = _check_member(member, dest, what)
                linked = _linked_file(member, files, what) if member.islnk() else None
                budget.member(files[linked].size if linked else member.size if member.isfile() else 0)
                if rel == ROOT or rel in PRIVATE_FILES or rel == linked:
                    continue  # a shipped cache manifest: ours is written after extraction
                try:
                    target = os.path.join(dest, *rel.split("/"))
                    if member.isdir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    if keep is not None and not keep(rel):
                        files[rel] = files[linked] if linked else FileRecord(member.size, "")
                        continue
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    if linked and not files[linked].sha256:
                        raise UnsafeArchiveError(
                            f"{what}: member {member.name!r} repeats {linked!r}, which was not kept; "
                            "extract the archive whole to read it."
                        )
                    if linked:
                        shutil.copyfile(os.path.join(dest, *linked.split("/")), target)
                        files[rel] = files[linked]
                    else:
                        files[rel] = _write_member(tar.extractfile(member), target, member, what)
                except (FileExistsError, IsADirectoryError, NotADirectoryError) as e:
                    raise UnsafeArchiveError(
                        f"{what}: member {member.name!r} is both a file and a directory ({e.strerror}); "
                        "refusing the archive."
                    ) from None
        _read_trailing(stream, raw if streams else None, what)
    except (tarfile.TarError, EOFError, CorruptStreamError) as e:
        raise IntegrityError(f"{what} is truncated or corrupt ({type(e).__name__}: {e}).") from e
    return ExtractedFiles(reader.sha256.hexdigest(), dict(sorted(files.items())))


def _read_trailing(stream: BinaryIO, raw: BinaryIO | None, what: str) -> None:
    """Read what follows the tar's end (record padding; the rest of the compressed stream, which
    checks its CRC; then anything after the stream, ``raw``) so the digest covers the whole file,
    refusing more than MAX_TRAILING_BYTES of it: a server may keep sending forever."""
    trailing = 0
    for source in (stream, raw) if raw is not None else (stream,):
        while chunk := source.read(_CHUNK):
            trailing += len(chunk)
            if trailing > MAX_TRAILING_BYTES:
                raise UnsafeArchiveError(
                    f"{what} goes on for more than {MAX_TRAILING_BYTES} bytes after the archive's end; "
                    "refusing it (a real archive ends with a little padding)."
                )


@dataclass
class ExtractedFiles:
    archive_sha256: str
    files: FileRecords


#: What :func:`_check_member` returns for the archive's root directory member (``.``, ``./``).
ROOT = ""


def _names_root(name: str) -> bool:
    """True for the names an archive's root directory is given: ``.`` and ``./`` (``tar -C DIR .``),
    and ``""`` (Python's ``tarfile`` with ``arcname=""`` writes ``/``, which it reads back empty)."""
    return all(part in ("", ".") for part in name.split("/"))


def _check_member(member: tarfile.TarInfo, dest: str, what: str) -> str:
    """The member's checked relative name (ROOT for the root directory); UnsafeArchiveError naming
    it if it must not be extracted."""
    if _names_root(member.name):
        if not member.isdir():
            raise UnsafeArchiveError(
                f"{what}: member {member.name!r} names the archive's root but is not a directory; "
                "refusing the archive."
            )
        return ROOT
    try:
        rel = relative_name(member.name)
    except ValueError as e:
        raise UnsafeArchiveError(
            f"{what}: unsafe member {member.name[:300]!r}: {e}; refusing the archive."
        ) from None
    if member.issym():
        raise UnsafeArchiveError(
            f"{what}: member {member.name!r} is a link (to {member.linkname!r}); module "
            "archives must hold plain files and directories only."
        )
    # isfile() holds for sparse files too, as tar reads them; hard links are checked by _linked_file
    if not (member.isfile() or member.isdir() or member.islnk()):
        raise UnsafeArchiveError(
            f"{what}: member {member.name!r} is a device, FIFO or other special file; refused."
        )
    try:
        tarfile.data_filter(member, dest)
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"{what}: unsafe member {member.name!r}: {e}") from None
    return rel


def _linked_file(member: tarfile.TarInfo, files: FileRecords, what: str) -> str:
    """The file a hard link member repeats: one this archive already wrote. tar stores a file it
    meets again (a directory named twice, two names for one file) as a hard link to the first
    copy; that is extracted as a copy. A hard link to anything else is refused."""
    try:
        linked = relative_name(member.linkname)
    except ValueError:
        linked = None
    if linked is None or linked not in files:
        raise UnsafeArchiveError(
            f"{what}: member {member.name!r} is a link (to {member.linkname!r}), not to a file the "
            "archive holds before it; module archives must hold plain files and directories only."
        )
    return linked


def _write_member(src: IO[bytes] | None, target: str, member: tarfile.TarInfo, what: str) -> FileRecord:
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


def pack(
    src_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    mtime: int | None = None,
    compresslevel: int = 6,
) -> str:
    """Pack ``src_dir`` into a reproducible tar.gz at ``out_path`` and return its sha256.

    Reproducible: members sorted by name, uid/gid 0 with empty owner names, modes normalised to
    0644/0755, every mtime set to ``mtime`` (default $SOURCE_DATE_EPOCH or 0), and a gzip header
    with mtime 0 and no file name. The same directory content always gives the same bytes.
    The archive is written beside ``out_path`` and renamed into place, so a failed pack never
    leaves a half-written file under the final name.
    """
    src_dir, out_path = os.fspath(src_dir), os.fspath(out_path)
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
