import hashlib
import logging
import os
import re
import shutil
import subprocess
import tarfile

import fsspec
import numpy as np
import pytest

import beam_hub
from beam_hub.cache import Manifest
from beam_hub.errors import (
    DownloadError,
    IntegrityError,
    ModuleNotFoundAtHandleError,
    NotASavedModelError,
    OfflineCacheMissError,
    UnsafeArchiveError,
    UnsupportedHandleError,
)
from beam_hub.resolvers import Resolver
from hubserver import HubServer


def entries(cache_dir):
    return sorted(n for n in os.listdir(cache_dir) if len(n) == 40) if os.path.isdir(cache_dir) else []


# --- local and fsspec -------------------------------------------------------------------------


def test_local_dir_and_file_url_are_used_in_place(one_input, cache_dir):
    assert beam_hub.resolve(one_input) == one_input
    assert beam_hub.resolve(f"file://{one_input}") == one_input
    assert entries(cache_dir) == []


def test_local_dir_without_saved_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NotASavedModelError, match="notes.txt"):
        beam_hub.resolve(str(tmp_path))
    with pytest.raises(ModuleNotFoundAtHandleError):
        beam_hub.resolve(str(tmp_path / "missing"))


def test_local_archive_is_extracted_into_the_cache(archives, cache_dir):
    path = beam_hub.resolve(archives["one_input"])
    assert path == os.path.join(cache_dir, hashlib.sha1(archives["one_input"].encode()).hexdigest())
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    manifest = Manifest.read(path)
    assert manifest.archive_sha256 == hashlib.sha256(open(archives["one_input"], "rb").read()).hexdigest()
    assert "variables/variables.index" in manifest.files
    assert os.path.isfile(path + ".descriptor.txt")
    assert open(path + ".descriptor.txt").readline() == f"Module: {archives['one_input']}\n"


def test_archive_wrapped_in_one_folder_is_hoisted(one_input, tmp_path, cache_dir):
    wrapped = tmp_path / "src"
    shutil.copytree(one_input, wrapped / "my_module")
    out = tmp_path / "wrapped.tar.gz"
    beam_hub.pack(str(wrapped), str(out))
    path = beam_hub.resolve(str(out))
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))


def test_archive_without_a_saved_model_caches_nothing(tmp_path, cache_dir):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("no model")
    subprocess.run(["tar", "-czf", str(tmp_path / "x.tar.gz"), "-C", str(tmp_path / "src"), "."], check=True)
    with pytest.raises(NotASavedModelError, match=r"the top holds readme.txt\. Pack the directory") as e:
        beam_hub.resolve(str(tmp_path / "x.tar.gz"))
    assert "tar -czf m.tar.gz -C DIR ." in str(e.value)
    assert os.listdir(cache_dir) == [n for n in os.listdir(cache_dir) if n.endswith(".lock")]


def test_an_archive_with_two_top_level_folders_lists_its_top_and_where_the_models_are(
    one_input, tmp_path, cache_dir
):
    """`tar czf m.tar.gz a b`: which of the two did the user mean? Neither is guessed."""
    shutil.copytree(one_input, tmp_path / "src" / "a" / "1")
    shutil.copytree(one_input, tmp_path / "src" / "b")
    (tmp_path / "src" / "NOTES.md").write_text("two models")
    archive = str(tmp_path / "two.tar.gz")
    subprocess.run(["tar", "-czf", archive, "-C", str(tmp_path / "src"), "a", "b", "NOTES.md"], check=True)
    with pytest.raises(NotASavedModelError) as e:
        beam_hub.resolve(archive)
    assert f"{archive} holds no SavedModel at its top" in str(e.value)
    assert "the top holds NOTES.md, a/, b/; a SavedModel is in a/1/, b/" in str(e.value)
    assert not [n for n in os.listdir(cache_dir) if not n.endswith(".lock")]


def test_a_module_inside_a_chain_of_single_folders_is_found(one_input, tmp_path, cache_dir):
    """`tar czf m.tar.gz /abs/path/model` keeps the whole path (GNU tar drops the leading /)."""
    model = tmp_path / "exports" / "team" / "model"
    shutil.copytree(one_input, model)
    archive = str(tmp_path / "abs.tar.gz")
    subprocess.run(["tar", "-czf", archive, str(model)], check=True, capture_output=True)
    path = beam_hub.resolve(archive)
    assert sorted(os.listdir(path)) == sorted(os.listdir(one_input) + [".beam_hub_manifest.json"])
    assert beam_hub.load(path)(np.ones((1, 3), np.float32)).tolist() == [[6.0]]


def test_memory_fs_directory_and_archive_are_copied_into_the_cache(one_input, archives, cache_dir):
    fs = fsspec.filesystem("memory")
    fs.put(one_input, "/hub/m1", recursive=True)
    fs.put(archives["one_input"], "/hub/m1.tar.gz")
    d = beam_hub.resolve("memory://hub/m1")
    a = beam_hub.resolve("memory://hub/m1.tar.gz")
    for path in (d, a):
        assert path.startswith(cache_dir)
        assert sorted(Manifest.read(path).files) == sorted(Manifest.read(d).files)
    with pytest.raises(ModuleNotFoundAtHandleError):
        beam_hub.resolve("memory://hub/missing")
    fs.pipe("/hub/empty/readme.txt", b"x")
    with pytest.raises(NotASavedModelError):
        beam_hub.resolve("memory://hub/empty")


def test_unknown_protocol_is_unsupported():
    with pytest.raises(UnsupportedHandleError, match="register_resolver"):
        beam_hub.resolve("nosuchproto://x/y")


def test_registered_resolver_wins(one_input):
    class Alias(Resolver):
        def is_supported(self, handle):
            return handle.raw.startswith("alias://")

        def __call__(self, handle, cache):
            return one_input

    r = Alias()
    beam_hub.register_resolver(r)
    try:
        assert beam_hub.resolve("alias://anything") == one_input
    finally:
        beam_hub.unregister_resolver(r)
    with pytest.raises(UnsupportedHandleError):
        beam_hub.resolve("alias://anything")


# --- http ---------------------------------------------------------------------------------------


def test_http_protocol_adds_the_format_query(server, one_input_tgz, cache_dir):
    url = server.add("/acme/m/1", one_input_tgz)
    path = beam_hub.resolve(url + "?lang=en")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert server.requests[-1] == ("GET", "/acme/m/1", {"lang": "en", "tf-hub-format": "compressed"})
    assert path == os.path.join(cache_dir, hashlib.sha1((url + "?lang=en").encode()).hexdigest())
    assert beam_hub.resolve(url + "?lang=en") == path
    assert server.gets("/acme/m/1") == 1  # second resolve is a cache hit


def test_http_archive_url_is_fetched_as_is(server, one_input_tgz):
    url = server.add("/files/m.tar.gz", one_input_tgz)
    beam_hub.resolve(url)
    assert server.requests[-1] == ("GET", "/files/m.tar.gz", {})


def test_http_5xx_is_retried(server, one_input_tgz):
    url = server.add("/m", one_input_tgz, mode="fail", statuses=[500, 503])
    assert os.path.isdir(beam_hub.resolve(url))
    assert server.gets("/m") == 3


def test_http_retries_are_bounded(server, one_input_tgz, monkeypatch, cache_dir):
    monkeypatch.setenv("BEAM_HUB_DOWNLOAD_RETRIES", "2")
    url = server.add("/m", one_input_tgz, mode="fail", statuses=[502] * 10)
    with pytest.raises(DownloadError, match="after 3 attempt"):
        beam_hub.resolve(url)
    assert server.gets("/m") == 3
    assert entries(cache_dir) == []


@pytest.mark.parametrize("status", [403, 410])
def test_http_4xx_is_not_retried(server, one_input_tgz, status):
    url = server.add("/m", one_input_tgz, mode="fail", statuses=[status])
    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        beam_hub.resolve(url)
    assert server.gets("/m") == 1


def test_http_404_names_the_handle(server):
    with pytest.raises(ModuleNotFoundAtHandleError, match="Nothing found"):
        beam_hub.resolve(server.url + "/nope.tar.gz")
    assert len(server.requests) == 1


def test_truncated_body_is_retried_then_refused_leaving_nothing(
    server, one_input_tgz, monkeypatch, cache_dir
):
    monkeypatch.setenv("BEAM_HUB_DOWNLOAD_RETRIES", "1")
    url = server.add("/m", one_input_tgz, mode="truncate")
    with pytest.raises(DownloadError):
        beam_hub.resolve(url)
    assert server.gets("/m") == 2
    assert entries(cache_dir) == []
    assert not [n for n in os.listdir(cache_dir) if n.endswith(".tmp")]


def test_stalled_download_times_out(server, one_input_tgz, monkeypatch, cache_dir):
    monkeypatch.setenv("BEAM_HUB_READ_TIMEOUT", "1")
    monkeypatch.setenv("BEAM_HUB_DOWNLOAD_RETRIES", "0")
    url = server.add("/m", one_input_tgz, mode="stall")
    with pytest.raises(DownloadError, match="Timeout"):
        beam_hub.resolve(url)
    assert entries(cache_dir) == []


def test_html_instead_of_an_archive(server, cache_dir):
    url = server.add("/m", b"", mode="html")
    with pytest.raises(IntegrityError, match="HTML page"):
        beam_hub.resolve(url)
    assert entries(cache_dir) == []


def test_malicious_archive_over_http_leaves_nothing(server, tmp_path, cache_dir):
    from test_archive import GOOD, make_tar

    evil = make_tar(tmp_path / "evil.tar.gz", [GOOD, ({"name": "../../escape"}, b"x")])
    url = server.add("/evil", open(evil, "rb").read())
    with pytest.raises(UnsafeArchiveError):
        beam_hub.resolve(url)
    assert entries(cache_dir) == []
    assert not [n for n in os.listdir(cache_dir) if n.endswith(".tmp")]
    assert not (tmp_path / "escape").exists()


def test_sha256_pin(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz)
    good = hashlib.sha256(one_input_tgz).hexdigest()
    with pytest.raises(IntegrityError, match="pins"):
        beam_hub.resolve(f"{url}#sha256={'0' * 64}")
    assert entries(cache_dir) == []
    assert os.path.isdir(beam_hub.resolve(f"{url}#sha256={good}"))


def test_offline_mode_serves_the_cache_and_refuses_misses(server, one_input_tgz, monkeypatch, one_input):
    url = server.add("/m", one_input_tgz)
    path = beam_hub.resolve(url)
    monkeypatch.setenv("BEAM_HUB_OFFLINE", "1")
    assert beam_hub.resolve(url) == path
    assert beam_hub.resolve(one_input) == one_input  # local handles need no network
    with pytest.raises(OfflineCacheMissError, match="BEAM_HUB_OFFLINE"):
        beam_hub.resolve(server.url + "/other")
    assert server.gets("/m") == 1
    assert len(server.requests) == 1


def test_progress_is_logged_when_not_on_a_terminal(server, one_input_tgz, monkeypatch, caplog):
    monkeypatch.setenv("BEAM_HUB_PROGRESS", "0")
    url = server.add("/m", one_input_tgz)
    with caplog.at_level(logging.INFO, logger="beam_hub.download"):
        beam_hub.resolve(url)
    assert f"Downloaded {url}?tf-hub-format=compressed" in caplog.text


def test_progress_bar_when_asked(server, one_input_tgz, monkeypatch, capsys):
    monkeypatch.setenv("BEAM_HUB_PROGRESS", "1")
    beam_hub.resolve(server.add("/m", one_input_tgz))
    assert "/m?tf-hub-format=compressed" in capsys.readouterr().err  # tqdm's bar, on stderr


@pytest.mark.parametrize(
    "handle, url",
    [
        (
            "https://tfhub.dev/google/nnlm-en-dim50/2",
            "https://tfhub.dev/google/nnlm-en-dim50/2?tf-hub-format=compressed",
        ),
        (
            "https://www.kaggle.com/models/google/nnlm/TensorFlow2/en-dim50/1",
            "https://www.kaggle.com/models/google/nnlm/TensorFlow2/en-dim50/1?tf-hub-format=compressed",
        ),
        ("https://example.com/files/m.tar.gz?sig=x", "https://example.com/files/m.tar.gz?sig=x"),
    ],
)
def test_public_hubs_are_plain_http_handles(handle, url):
    from beam_hub.handles import parse_handle
    from beam_hub.resolvers.http import HttpResolver, download_url

    parsed = parse_handle(handle)
    assert HttpResolver().is_supported(parsed)
    assert download_url(parsed) == url


# --- hostile servers and planted entries ---------------------------------------------------------


def test_a_pinned_handle_never_uses_an_entry_it_cannot_check(server, one_input_tgz, fruit, cache_dir):
    """An entry written by tensorflow_hub (no manifest) or planted: fetched again and checked."""
    url = server.add("/m", one_input_tgz)
    pinned = f"{url}#sha256={hashlib.sha256(one_input_tgz).hexdigest()}"
    planted = os.path.join(cache_dir, hashlib.sha1(pinned.encode()).hexdigest())
    shutil.copytree(fruit, planted)  # another module, as a foreign tool would leave it
    path = beam_hub.resolve(pinned)
    assert path == planted and server.gets("/m") == 1
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()
    assert beam_hub.load(pinned).signatures.keys() == {"default", "__call__"}  # the pinned module, not fruit
    assert beam_hub.resolve(pinned) == path and server.gets("/m") == 1  # now a checked hit


def test_a_pinned_handle_refetches_an_entry_recorded_with_another_archive(
    server, one_input_tgz, fruit, archives, cache_dir
):
    url = server.add("/m", one_input_tgz)
    pinned = f"{url}#sha256={hashlib.sha256(one_input_tgz).hexdigest()}"
    path = beam_hub.resolve(pinned)
    manifest = Manifest.read(path)
    manifest.archive_sha256 = "f" * 64  # as if another archive had been cached under this handle
    manifest.write(path)
    assert beam_hub.resolve(pinned) == path and server.gets("/m") == 2
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()


def test_an_archive_carrying_a_cache_manifest_is_downloaded_once(server, one_input, tmp_path):
    """`tar czf` of a cache entry ships our manifest, which listed itself with the wrong size."""
    entry = tmp_path / "entry"
    shutil.copytree(one_input, entry)
    Manifest.build(str(entry), "elsewhere").write(str(entry))
    archive = tmp_path / "entry.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in sorted(os.listdir(entry)):
            tar.add(entry / name, arcname=name)
    url = server.add("/m", archive.read_bytes())
    paths = {beam_hub.resolve(url) for _ in range(3)}
    assert len(paths) == 1 and server.gets("/m") == 1
    assert Manifest.read(paths.pop()).handle == url


def test_a_redirect_loop_is_named(server):
    server.add("/a", b"", mode="redirect", statuses=[302], location="/b")
    server.add("/b", b"", mode="redirect", statuses=[301], location=server.url + "/a")
    with pytest.raises(
        DownloadError, match=r"Redirect loop: .*/a\?tf-hub-format=compressed -> .*/b -> .*/a -> .*/b"
    ):
        beam_hub.resolve(server.url + "/a")
    assert server.gets("/a") == 2 and server.gets("/b") == 1  # once round the loop, not retried


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/m.tar.gz"])
def test_a_redirect_off_http_is_refused_at_once(server, target, cache_dir):
    server.add("/m", b"", mode="redirect", statuses=[302], location=target)
    with pytest.raises(
        DownloadError, match=f"redirected to '{re.escape(target)}': only http\\(s\\) redirects"
    ):
        beam_hub.resolve(server.url + "/m")
    assert server.gets("/m") == 1 and entries(cache_dir) == []


def test_redirects_across_hosts_work_as_tfhub_to_kaggle_to_storage_does(server, one_input_tgz):
    storage = HubServer()
    try:
        signed = storage.add("/bucket/m.tar.gz", one_input_tgz) + "?X-Goog-Signature=abc"
        server.add("/kaggle/m", b"", mode="redirect", statuses=[302], location=signed)
        handle = server.add("/tfhub/m", b"", mode="redirect", statuses=[301], location="/kaggle/m")
        path = beam_hub.resolve(handle)
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        assert storage.gets("/bucket/m.tar.gz") == 1
        assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()
    finally:
        storage.stop()


def test_a_remote_directory_listing_cannot_write_outside_the_entry(one_input, cache_dir, tmp_path):
    fs = fsspec.filesystem("memory")
    fs.put(one_input, "/evil/m", recursive=True)
    fs.pipe("/evil/m/variables/../../../../escape.txt", b"evil")
    with pytest.raises(
        beam_hub.errors.UnsafePathError, match=r"names '/evil/m/variables/\.\./\.\./\.\./\.\./escape\.txt'"
    ):
        beam_hub.resolve("memory://evil/m")
    assert not list(tmp_path.rglob("escape.txt")) and entries(cache_dir) == []


def test_handles_naming_each_other_are_not_followed_forever():
    from beam_hub.handles import parse_handle
    from beam_hub.resolvers import resolve_in

    class Loop(Resolver):
        def is_supported(self, handle):
            return handle.protocol == "loop"

        def __call__(self, handle, cache):
            return resolve_in(parse_handle("loop://again"), cache)

    r = Loop()
    beam_hub.register_resolver(r)
    try:
        with pytest.raises(UnsupportedHandleError, match="chain of locations"):
            beam_hub.resolve("loop://start")
    finally:
        beam_hub.unregister_resolver(r)
