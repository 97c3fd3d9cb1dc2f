import gzip
import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from beam_hub.archive import pack, safe_extract
from beam_hub.errors import IntegrityError, UnsafeArchiveError
from beam_hub.files import FileRecord
from packers import GUIDE, bsd, gnu, py_tarfile


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


def tree(root, files: dict[str, bytes]) -> str:
    """A directory holding ``files`` (relative POSIX path -> content)."""
    for rel, data in files.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


def extract(archive, tmp_path, **kwargs):
    dest = tmp_path / "out"
    dest.mkdir(exist_ok=True)
    return safe_extract(str(archive), str(dest), what=str(archive), **kwargs)


def contents(root) -> dict[str, bytes]:
    out = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(base, name)
            out[os.path.relpath(full, root).replace(os.sep, "/")] = open(full, "rb").read()
    return out


# Each refusal below has a legitimate twin beside it (test_twin_*): the nearest archive a real
# tool writes, which must load. tests/test_interop.py runs the same tools over whole modules.


@pytest.mark.parametrize(
    "member, match",
    [
        (({"name": "../escape.txt"}, b"x"), "unsafe member"),
        (({"name": "/abs/escape.txt"}, b"x"), "unsafe member"),
        (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None), "is a link"),
        (({"name": "inner_link", "type": tarfile.SYMTYPE, "linkname": "saved_model.pb"}, None), "is a link"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None), "is a link"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None), "would link to"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "comes-later"}, None), "is a link"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "variables"}, None), "is a link"),
        (({"name": ".", "type": tarfile.SYMTYPE, "linkname": "/"}, None), "names the archive's root"),
        (({"name": "./"}, b"a file as the root"), "names the archive's root"),
        (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None), "device"),
        (({"name": "fifo", "type": tarfile.FIFOTYPE}, None), "device"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, member, match):
    archive = make_tar(
        tmp_path / "evil.tar.gz", [GOOD, ({"name": "variables", "type": tarfile.DIRTYPE}, None), member]
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, str(dest), what="evil")
    assert not (tmp_path / "escape.txt").exists()


MODULE = {
    "saved_model.pb": b"pb",
    "variables/variables.index": b"idx",
    "variables/variables.data-00000-of-00001": b"data",
    "assets/vocab.txt": b"a\nb\n",
}


@pytest.mark.parametrize(
    "pack",
    [gnu("-z", *GUIDE), bsd("-z"), py_tarfile(arcname="."), py_tarfile(arcname="")],
    ids=["gnu-guide", "bsdtar", "tarfile-dot", "tarfile-empty-arcname"],
)
def test_twin_the_root_directory_member_is_the_destination(tmp_path, pack):
    """`tar -C DIR .` writes a root member '.' and './' before every name; Python's tarfile with
    arcname="" writes '/': each is the archive's root, not an unsafe name."""
    archive = str(tmp_path / "m.tar.gz")
    pack(tree(tmp_path / "m", MODULE), archive)
    got = extract(archive, tmp_path)
    assert contents(tmp_path / "out") == MODULE and sorted(got.files) == sorted(MODULE)


def test_twin_names_near_the_refused_ones(tmp_path):
    """'..' inside a name, a colon that is no drive, spaces and accents, a 255-byte component,
    a dot file: what real modules hold, packed by GNU tar."""
    files = {
        **MODULE,
        "assets/notes..txt": b"1",
        "assets/..hidden": b"2",
        "assets/label:map.txt": b"3",
        "assets/vocabulário ñ 語.txt": b"4",
        "assets/" + "x" * 255: b"5",
        ".keep": b"",
    }
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(tree(tmp_path / "m", files), archive)
    extract(archive, tmp_path)
    assert contents(tmp_path / "out") == files


def test_twin_a_symbolic_link_stored_as_its_file_loads(tmp_path):
    """`tar -h` stores what a symbolic link points to: a plain file."""
    src = tree(tmp_path / "m", MODULE)
    tree(tmp_path / "shared", {"labels.txt": b"cat\ndog\n"})
    os.symlink(str(tmp_path / "shared" / "labels.txt"), os.path.join(src, "assets", "labels.txt"))
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", "-h", *GUIDE)(src, archive)
    extract(archive, tmp_path)
    assert contents(tmp_path / "out") == {**MODULE, "assets/labels.txt": b"cat\ndog\n"}


def test_twin_hard_links_tar_writes_for_a_file_met_twice_are_copies(tmp_path):
    """A file with two names (a deduplicating store's hard links) and a directory listed twice:
    GNU tar writes the second as a hard link to the first copy; both come out as plain files,
    and changing one does not change the other."""
    src = tree(tmp_path / "m", MODULE)
    os.link(os.path.join(src, "assets", "vocab.txt"), os.path.join(src, "assets", "vocab-copy.txt"))
    archive = str(tmp_path / "m.tar")
    gnu(*GUIDE, what=(".", "./assets"))(src, archive)
    with tarfile.open(archive) as tar:
        links = [m for m in tar.getmembers() if m.islnk()]
    assert {m.linkname for m in links} == {"./assets/vocab.txt"} and len(links) >= 2
    got = extract(archive, tmp_path)
    out = tmp_path / "out" / "assets"
    assert contents(tmp_path / "out") == {**MODULE, "assets/vocab-copy.txt": b"a\nb\n"}
    assert got.files["assets/vocab-copy.txt"] == got.files["assets/vocab.txt"]
    assert not os.path.samefile(out / "vocab.txt", out / "vocab-copy.txt")


def test_twin_empty_files_and_directories_load(tmp_path):
    """Where a device or FIFO is refused, an empty file or an empty directory (Keras' assets/) is not."""
    src = tree(tmp_path / "m", {**MODULE, "variables/.keep": b""})
    os.makedirs(os.path.join(src, "assets", "empty"))
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(src, archive)
    extract(archive, tmp_path)
    assert (tmp_path / "out" / "assets" / "empty").is_dir()
    assert contents(tmp_path / "out") == {**MODULE, "variables/.keep": b""}


@pytest.mark.parametrize(
    "options",
    [
        ["--mode=go-rwx"],  # directories 0700, files 0600
        ["--mode=a-w", "--mtime=@0"],  # read-only everything, the epoch
        ["--mtime=2200-01-01"],  # from the future
        ["--owner=1234567", "--group=7654321", "--format=posix"],  # ids past ustar's octal fields
    ],
)
def test_twin_modes_times_and_owners_real_tools_write(tmp_path, options):
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *options)(tree(tmp_path / "m", MODULE), archive)
    extract(archive, tmp_path)
    assert contents(tmp_path / "out") == MODULE
    assert os.access(tmp_path / "out" / "saved_model.pb", os.R_OK | os.W_OK)


def test_decompression_bomb_is_stopped_by_the_byte_cap(tmp_path):
    archive = make_tar(tmp_path / "bomb.tar.gz", [GOOD, ({"name": "zeros"}, b"\0" * (4 << 20))])
    assert os.path.getsize(archive) < 64 << 10  # compresses to almost nothing
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        safe_extract(archive, str(tmp_path), what="bomb", max_bytes=1 << 20)


def test_twin_weights_that_compress_to_nothing_load_within_the_cap(tmp_path):
    """Zero-initialised weights compress as well as a bomb does; what decides is their real size."""
    files = {**MODULE, "variables/variables.data-00000-of-00001": b"\0" * (4 << 20)}
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(tree(tmp_path / "m", files), archive)
    assert os.path.getsize(archive) < 64 << 10
    extract(archive, tmp_path, max_bytes=5 << 20)
    assert contents(tmp_path / "out") == files


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
        (b"PK\x03\x04 zip file", "not a tar archive .*: it is a zip file"),
        (b"\x28\xb5\x2f\xfd zstd frame", "it is zstd-compressed .* tar -czf m.tar.gz -C DIR ."),
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


def test_a_gzip_whose_checksum_does_not_match_is_an_integrity_error(tmp_path):
    """The stream is read to its end, so gzip's own check (the CRC-32 in its trailer) catches damage
    past the tar's end marker, which tarfile never reads."""
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(tree(tmp_path / "m", MODULE), archive)
    data = bytearray(open(archive, "rb").read())
    data[-8] ^= 0xFF  # the CRC-32 in gzip's trailer
    (tmp_path / "bad.tar.gz").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="truncated or corrupt .*damaged"):
        extract(tmp_path / "bad.tar.gz", tmp_path)


def test_twin_a_gzip_padded_to_whole_blocks_with_zeros_loads(tmp_path):
    """`dd conv=sync` (tape and block devices) pads the compressed file with zeros."""
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(tree(tmp_path / "m", MODULE), archive)
    padded = str(tmp_path / "padded.tar.gz")
    subprocess.run(
        ["dd", f"if={archive}", f"of={padded}", "bs=10240", "conv=sync"], check=True, capture_output=True
    )
    assert os.path.getsize(padded) % 10240 == 0 and os.path.getsize(padded) > os.path.getsize(archive)
    extract(padded, tmp_path)
    assert contents(tmp_path / "out") == MODULE


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


@pytest.mark.parametrize(
    "pack", [gnu("-z"), gnu("-z", "--format=posix"), bsd("-z"), py_tarfile(fmt=tarfile.GNU_FORMAT)]
)
def test_twin_long_names_through_gnu_long_names_and_pax_paths_load(tmp_path, pack):
    """Names past 100 bytes (here 1,300) go in GNU ././@LongLink headers or pax path records."""
    deep = "/".join(["assets"] + [f"{i}" * 250 for i in range(5)] + ["vocab.txt"])
    files = {**MODULE, deep: b"deep"}
    archive = str(tmp_path / "m.tar.gz")
    pack(tree(tmp_path / "m", files), archive)
    extract(archive, tmp_path, max_bytes=1 << 20)
    assert contents(tmp_path / "out") == files


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


def test_twin_pax_headers_on_every_member_cost_what_they_are(tmp_path):
    """GNU tar's posix format gives every member a pax header (times to the nanosecond): 300 such
    members load within twice what their files take on disk."""
    files = {**MODULE, **{f"assets/shard-{i:03d}.txt": b"x" * 100 for i in range(300)}}
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", "--format=posix")(tree(tmp_path / "m", files), archive)
    with tarfile.open(archive) as tar:
        assert all(m.pax_headers for m in tar.getmembers())
    on_disk = sum(-(-max(len(d), 1) // 4096) * 4096 for d in files.values()) + 4096 * 4
    extract(archive, tmp_path, max_bytes=2 * on_disk)
    assert contents(tmp_path / "out") == files


def test_a_flood_of_tiny_members_is_charged_disk_blocks(tmp_path):
    members = [GOOD] + [({"name": f"d/{i}"}, b"x") for i in range(3000)]
    archive = make_tar(tmp_path / "flood.tar.gz", members)
    assert os.path.getsize(archive) < 200_000  # 3,000 one-byte files: well under the cap as content
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        safe_extract(archive, str(tmp_path / "out"), what="flood", max_bytes=10 << 20)


def test_twin_thousands_of_small_files_load_within_a_cap_their_size_fits(tmp_path):
    """A vocabulary split in 3,000 small files (as the flood above) loads under a cap that counts
    what they really take: a disk block and a header each."""
    files = {**MODULE, **{f"assets/d/{i}": b"x" for i in range(3000)}}
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(tree(tmp_path / "m", files), archive)
    extract(archive, tmp_path, max_bytes=3010 * (4096 + 512) + 3 * 2 * (4096 + 512))
    assert len(contents(tmp_path / "out")) == len(files)


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


def test_twin_a_file_named_twice_the_last_copy_wins(tmp_path):
    """`tar -rf` appends a newer copy of a file (read-only, here): as tar extracts it, the last
    copy is the one kept."""
    src = tree(tmp_path / "m", MODULE)
    archive = str(tmp_path / "m.tar")
    gnu("--mode=a-w")(src, archive)
    with open(os.path.join(src, "saved_model.pb"), "wb") as f:
        f.write(b"newer pb")
    subprocess.run(["tar", "-rf", archive, "-C", src, "./saved_model.pb"], check=True)
    got = extract(archive, tmp_path)
    assert (tmp_path / "out" / "saved_model.pb").read_bytes() == b"newer pb"
    assert got.files["saved_model.pb"] == FileRecord(8, hashlib.sha256(b"newer pb").hexdigest())


def test_twin_files_before_their_directories_and_directories_named_twice(tmp_path):
    """Each file named before its directory, then every directory named again: no name is both
    a file and a directory, so it loads."""
    src = tree(tmp_path / "m", MODULE)
    names = [*sorted(MODULE), "variables", "assets", "variables", "."]
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", "--no-recursion", what=tuple(names))(src, archive)
    extract(archive, tmp_path)
    assert contents(tmp_path / "out") == MODULE


def gnu_sparse_bomb(path, blocks: int) -> str:
    """An old-GNU sparse member whose map goes on for ``blocks`` extension blocks of 21 regions."""
    info = tarfile.TarInfo("holes.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[482] = 1  # isextended
    header[483:495] = tarfile.itn(1 << 20, 12, tarfile.GNU_FORMAT)  # realsize
    header[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(header))[0]
    ext = bytearray(512)
    for i in range(21):
        ext[i * 24 : i * 24 + 24] = tarfile.itn(2 * i + 1, 12) + tarfile.itn(1, 12)
    ext[504] = 1
    path.write_bytes(gzip.compress(bytes(header) + bytes(ext) * blocks + b"\0" * 1024))
    return str(path)


def test_a_sparse_map_that_never_ends_is_refused_before_it_fills_memory(tmp_path):
    archive = gnu_sparse_bomb(tmp_path / "s.tar.gz", blocks=4000)  # 84,000 regions in 2 MB
    with pytest.raises(UnsafeArchiveError, match="more than 65536 data regions"):
        safe_extract(archive, str(tmp_path / "out"), what="s")


@pytest.mark.parametrize(
    "pax, data, match",
    [
        ({"GNU.sparse.realsize": "100"}, b"99999999\n", "more than 65536 data regions"),
        ({"GNU.sparse.realsize": "100"}, b"1\nzero\n1\n", "map is malformed"),
        ({"GNU.sparse.realsize": "100"}, b"1\n" + b"7" * 600, "map is malformed"),
        ({"GNU.sparse.realsize": str(1 << 40)}, b"1\n0\n1\nx", "expands to more than"),
    ],
)
def test_a_hostile_pax_sparse_map_is_refused(tmp_path, pax, data, match):
    """GNU's PAX 1.0 sparse format keeps the map in the data: a huge count, a bad number, a
    number with no end, or a real size past the cap are refused as they are read."""
    info = tarfile.TarInfo("GNUSparseFile.0/holes.bin")
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "holes.bin",
        **pax,
    }
    info.size = len(data)
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("saved_model.pb"), io.BytesIO(b""))
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(str(tmp_path / "s.tar.gz"), str(tmp_path / "out"), what="s", max_bytes=1 << 30)


@pytest.mark.parametrize(
    "options", [["-S"], ["-S", "--format=posix"], ["-S", "--format=posix", "--sparse-version=1.0"]]
)
def test_twin_sparse_files_from_gnu_tar_are_extracted_whole(tmp_path, options):
    """tar -S stores a file with holes as a sparse member (three ways); it comes out byte for byte."""
    src = tree(tmp_path / "m", {"saved_model.pb": b"pb"})
    with open(os.path.join(src, "holes.bin"), "wb") as f:
        f.write(b"head")
        f.seek(3 << 20)
        f.write(b"tail")
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *options)(src, archive)
    with tarfile.open(archive) as tar:
        assert tar.getmember("./holes.bin").issparse()
    got = extract(archive, tmp_path)
    assert (tmp_path / "out" / "holes.bin").read_bytes() == open(os.path.join(src, "holes.bin"), "rb").read()
    assert got.files["holes.bin"].size == (3 << 20) + 4


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


@pytest.mark.parametrize("blocking", ["20", "2048"])
def test_twin_record_padding_real_tar_writes_is_read_to_the_end(tmp_path, blocking):
    """A plain tar is padded to whole records: 10 KiB by default, 1 MiB with -b 2048."""
    archive = str(tmp_path / "m.tar")
    gnu("-b", blocking)(tree(tmp_path / "m", MODULE), archive)
    assert os.path.getsize(archive) % (int(blocking) * 512) == 0
    got = extract(archive, tmp_path)
    assert got.archive_sha256 == hashlib.sha256(open(archive, "rb").read()).hexdigest()


def test_a_zstd_archive_from_bsdtar_is_named_with_how_to_repack_it(tmp_path):
    """tarfile (and tensorflow_hub with it) reads gzip, bzip2 and xz only; zstd gets a clear error."""
    archive = str(tmp_path / "m.tar.zst")
    bsd("--zstd")(tree(tmp_path / "m", MODULE), archive)
    with pytest.raises(IntegrityError, match="it is zstd-compressed .* tar -czf m.tar.gz -C DIR ."):
        extract(archive, tmp_path)


def graph_files_only(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1] == "saved_model.pb"


@pytest.mark.parametrize(
    "member, match",
    [(({"name": "../escape.txt"}, b"x"), "unsafe member")]
    + [
        (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None), "device"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None), "is a link"),
    ],
)
def test_members_not_kept_are_still_checked(tmp_path, member, match):
    """Reading only the graph out of an archive (what `beam-hub serve` does) refuses what
    extracting it would refuse, wherever the member is."""
    archive = make_tar(tmp_path / "evil.tar.gz", [GOOD, member])
    with pytest.raises(UnsafeArchiveError, match=match):
        extract(archive, tmp_path, keep=graph_files_only)


def test_twin_keep_writes_only_what_it_accepts_and_lists_the_rest(tmp_path):
    src = tree(tmp_path / "m", {**MODULE, "sub/saved_model.pb": b"inner"})
    os.link(os.path.join(src, "assets", "vocab.txt"), os.path.join(src, "assets", "vocab-copy.txt"))
    archive = str(tmp_path / "m.tar.gz")
    gnu("-z", *GUIDE)(src, archive)  # the hosting guide's archive; the second name a hard link
    got = extract(archive, tmp_path, keep=graph_files_only)
    assert contents(tmp_path / "out") == {"saved_model.pb": b"pb", "sub/saved_model.pb": b"inner"}
    assert got.files["saved_model.pb"] == FileRecord(2, hashlib.sha256(b"pb").hexdigest())
    assert got.files["variables/variables.data-00000-of-00001"] == FileRecord(4, "")  # listed, not read
    assert got.files["assets/vocab-copy.txt"].size == 4
    assert got.archive_sha256 == hashlib.sha256(open(archive, "rb").read()).hexdigest()


def test_a_kept_hard_link_to_a_file_not_kept_is_refused(tmp_path):
    archive = make_tar(
        tmp_path / "m.tar.gz",
        [
            ({"name": "graph.bin"}, b"pb"),
            ({"name": "saved_model.pb", "type": tarfile.LNKTYPE, "linkname": "graph.bin"}, None),
        ],
    )
    with pytest.raises(UnsafeArchiveError, match="which was not kept"):
        extract(archive, tmp_path, keep=graph_files_only)
    assert contents(tmp_path / "out") == {}
