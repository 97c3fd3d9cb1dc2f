import gzip
import hashlib
import io
import os
import tarfile

import pytest

from beam_hub.archive import pack, safe_extract
from beam_hub.errors import IntegrityError, UnsafeArchiveError
from beam_hub.files import FileRecord


def make_tar(path, members, gz=True):
    """members: list of (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for spec, data in members:
            kwargs = dict(spec)
            info = tarfile.TarInfo(kwargs.pop("name"))
            for k, v in kwargs.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return str(path)


GOOD = ({"name": "saved_model.pb"}, b"pb")


@pytest.mark.parametrize(
    "member, match",
    [
        (({"name": "../escape.txt"}, b"x"), "unsafe member"),
        (({"name": "/abs/escape.txt"}, b"x"), "unsafe member"),
        (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None), "is a link"),
        (({"name": "inner_link", "type": tarfile.SYMTYPE, "linkname": "saved_model.pb"}, None), "is a link"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "saved_model.pb"}, None), "is a link"),
        (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None), "device"),
        (({"name": "fifo", "type": tarfile.FIFOTYPE}, None), "device"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, member, match):
    archive = make_tar(tmp_path / "evil.tar.gz", [GOOD, member])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, str(dest), what="evil")
    assert not (tmp_path / "escape.txt").exists()


def test_decompression_bomb_is_stopped_by_the_byte_cap(tmp_path):
    archive = make_tar(tmp_path / "bomb.tar.gz", [GOOD, ({"name": "zeros"}, b"\0" * (4 << 20))])
    assert os.path.getsize(archive) < 64 << 10  # compresses to almost nothing
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        safe_extract(archive, str(tmp_path), what="bomb", max_bytes=1 << 20)


def test_plain_tar_and_nested_dirs_extract(tmp_path):
    archive = make_tar(
        tmp_path / "m.tar",
        [
            ({"name": "variables", "type": tarfile.DIRTYPE}, None),
            GOOD,
            ({"name": "./variables/variables.index"}, b"idx"),
        ],
        gz=False,
    )
    dest = tmp_path / "out"
    dest.mkdir()
    got = safe_extract(archive, str(dest), what="m")
    assert (dest / "variables" / "variables.index").read_bytes() == b"idx"
    assert got.archive_sha256 == hashlib.sha256(open(archive, "rb").read()).hexdigest()
    assert got.files == {
        "saved_model.pb": FileRecord(2, hashlib.sha256(b"pb").hexdigest()),
        "variables/variables.index": FileRecord(3, hashlib.sha256(b"idx").hexdigest()),
    }


@pytest.mark.parametrize(
    "body, match",
    [
        (b"<!DOCTYPE html><html>login</html>", "HTML page"),
        (b"", "empty body"),
        (b"PK\x03\x04 zip file", "not a tar"),
    ],
)
def test_non_archives_get_a_clear_error(tmp_path, body, match):
    path = tmp_path / "x"
    path.write_bytes(body)
    with pytest.raises(IntegrityError, match=match):
        safe_extract(str(path), str(tmp_path), what="http://h/m")


def test_truncated_gzip_is_an_integrity_error(tmp_path):
    archive = make_tar(tmp_path / "m.tar.gz", [GOOD, ({"name": "big"}, os.urandom(100_000))])
    data = open(archive, "rb").read()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="truncated or corrupt"):
        safe_extract(str(cut), str(dest), what="cut")


def test_pack_is_reproducible_and_normalised(tmp_path, one_input):
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    da = pack(one_input, str(a))
    # the same content with other mtimes and modes packs to the same bytes
    for root, _dirs, files in os.walk(one_input):
        for name in files:
            os.utime(os.path.join(root, name), (1e9, 1e9))
    db = pack(one_input, str(b))
    assert da == db == hashlib.sha256(b.read_bytes()).hexdigest()
    assert a.read_bytes() == b.read_bytes()
    assert gzip.open(a).read(1)  # valid gzip
    with open(a, "rb") as f:
        assert f.read(10)[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    with tarfile.open(a) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert "saved_model.pb" in names
        for m in tar.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
            assert m.mode in (0o644, 0o755)


def test_pack_refuses_symlinks_and_leaves_no_partial_file(tmp_path, one_input):
    import shutil

    src = tmp_path / "m"
    shutil.copytree(one_input, src)
    os.symlink("/etc/hostname", src / "link")
    out = tmp_path / "out.tar.gz"
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        pack(str(src), str(out))
    assert os.listdir(tmp_path) == ["m"]


# --- hostile archives: headers, floods, names ------------------------------------------------------


def header_only(path, tar_type, size, name="././@LongLink"):
    """A gzipped archive that is one header block announcing ``size`` bytes of extended header,
    and nothing after it: reading what it announces would fail, refusing it must not read it."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tar_type, size
    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024))
    return str(path)


@pytest.mark.parametrize(
    "tar_type, kind", [(tarfile.XHDTYPE, "pax"), (tarfile.GNUTYPE_LONGNAME, "GNU long name")]
)
def test_huge_extended_headers_are_refused_before_they_are_read(tmp_path, tar_type, kind):
    archive = header_only(tmp_path / "h.tar.gz", tar_type, 300 << 20)
    with pytest.raises(UnsafeArchiveError, match=f"a {kind} header of {300 << 20} bytes"):
        safe_extract(archive, str(tmp_path / "out"), what="hostile", max_bytes=10 << 20)


def test_a_pax_header_under_the_header_limit_still_counts_toward_the_cap(tmp_path):
    """Many medium pax headers (each below the per-header limit) exhaust the byte budget."""
    members = [GOOD] + [({"name": f"f{i}", "pax_headers": {"comment": "x" * 60_000}}, b"") for i in range(40)]
    with tarfile.open(tmp_path / "p.tar.gz", "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for spec, data in members:
            info = tarfile.TarInfo(spec["name"])
            info.pax_headers = spec.get("pax_headers", {})
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="expands to more than 1048576 bytes"):
        safe_extract(str(tmp_path / "p.tar.gz"), str(tmp_path / "out"), what="p", max_bytes=1 << 20)


def test_a_flood_of_tiny_members_is_charged_disk_blocks(tmp_path):
    members = [GOOD] + [({"name": f"d/{i}"}, b"x") for i in range(3000)]
    archive = make_tar(tmp_path / "flood.tar.gz", members)
    assert os.path.getsize(archive) < 200_000  # 3,000 one-byte files: well under the cap as content
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        safe_extract(archive, str(tmp_path / "out"), what="flood", max_bytes=10 << 20)


@pytest.mark.parametrize(
    "name, match",
    [("x" * 300, "component longer than 255 bytes"), ("a\\..\\b", "backslash"), ("C:/x", "drive letter")],
)
def test_names_the_file_system_cannot_hold_are_refused_by_name(tmp_path, name, match):
    archive = make_tar(tmp_path / "n.tar.gz", [GOOD, ({"name": name}, b"x")])
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, str(tmp_path / "out"), what="n")


@pytest.mark.parametrize(
    "members",
    [
        [({"name": "a"}, b"file"), ({"name": "a/b"}, b"inside a file")],
        [({"name": "d", "type": tarfile.DIRTYPE}, None), ({"name": "d"}, b"a file over a directory")],
    ],
)
def test_a_name_that_is_a_file_and_a_directory_is_refused_naming_it(tmp_path, members):
    archive = make_tar(tmp_path / "c.tar.gz", [GOOD, *members])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(
        UnsafeArchiveError, match=f"member '{members[1][0]['name']}' is both a file and a directory"
    ):
        safe_extract(archive, str(dest), what="c")


def test_sparse_members_are_refused(tmp_path):
    archive = make_tar(
        tmp_path / "s.tar.gz", [GOOD, ({"name": "sparse", "type": tarfile.GNUTYPE_SPARSE}, b"x")]
    )
    with pytest.raises(UnsafeArchiveError, match="sparse"):
        safe_extract(archive, str(tmp_path / "out"), what="s")


def test_a_shipped_cache_manifest_is_not_extracted(tmp_path):
    archive = make_tar(
        tmp_path / "m.tar.gz", [GOOD, ({"name": ".beam_hub_manifest.json"}, b'{"handle": "x"}')]
    )
    dest = tmp_path / "out"
    dest.mkdir()
    got = safe_extract(archive, str(dest), what="m")
    assert list(got.files) == ["saved_model.pb"] and os.listdir(dest) == ["saved_model.pb"]


def test_endless_data_after_the_archive_is_refused(tmp_path):
    """A server may keep sending after the tar's end: reading must stop, not hash forever."""
    archive = make_tar(tmp_path / "m.tar", [GOOD], gz=False)
    stream = io.BytesIO(open(archive, "rb").read() + b"\0" * (3 << 20))
    with pytest.raises(UnsafeArchiveError, match="after the archive's end"):
        safe_extract(stream, str(tmp_path / "out"), what="endless")
