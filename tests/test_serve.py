import hashlib
import json
import os
import shutil
import socket
import threading

import numpy as np
import pytest

import beam_hub
from beam_hub.cache import Manifest, cache_key
from beam_hub.errors import DownloadError, IntegrityError, ModuleNotFoundAtHandleError
from helpers import Served, get, get_no_redirect

X = np.array([[1, 2, 3]], np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory, modules_dir, archives):
    base = tmp_path_factory.mktemp("served")
    root = base / "root"
    shutil.copytree(modules_dir["fruit"], root / "acme" / "fruit" / "1")
    (root / "acme" / "fruit" / "1" / "README.md").write_text("# Fruit\nTurns fruit into pets.\n")
    (root / "acme" / "linear").mkdir(parents=True)
    shutil.copy(archives["one_input"], root / "acme" / "linear" / "1.tar.gz")
    (base / "secret.txt").write_text("outside the root")
    os.symlink(modules_dir["one_input"], root / "acme" / "escape")
    return str(root)


@pytest.fixture(scope="module")
def served(root):
    s = Served(root)
    yield s
    log = s.stop()
    assert '"GET /acme/fruit/1?tf-hub-format=compressed HTTP/1.1" 200' in log  # one line per request


def test_tensorflow_hub_loads_from_serve(served):
    hub = pytest.importorskip("tensorflow_hub")
    m = hub.load(served.url + "/acme/fruit/1")
    out = m.signatures["fruit_to_pet"](apples=X, oranges=X)
    np.testing.assert_allclose(out["cats"].numpy(), X @ np.eye(3, 2))


def test_beam_hub_resolves_from_serve_and_checks_the_etag(served, cache_dir):
    module = beam_hub.load(served.url + "/acme/fruit/1")
    status, headers, body = get(served.url + "/acme/fruit/1?tf-hub-format=compressed")
    assert status == 200 and headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert Manifest.read(module.path).archive_sha256 == hashlib.sha256(body).hexdigest()
    assert headers["Content-Length"] == str(len(body)) and "Last-Modified" in headers
    # pre-packed archives serve the same URL form
    linear = beam_hub.load(served.url + "/acme/linear/1")
    np.testing.assert_allclose(linear(X), [[14.0]])


def test_sha256_pin_against_serve(served, cache_dir):
    body = get(served.url + "/acme/fruit/1?tf-hub-format=compressed")[2]
    with pytest.raises(IntegrityError, match="pins"):
        beam_hub.resolve(served.url + "/acme/fruit/1#sha256=" + "1" * 64)
    assert [n for n in os.listdir(cache_dir) if len(n) == 40] == []
    good = served.url + "/acme/fruit/1#sha256=" + hashlib.sha256(body).hexdigest()
    assert os.path.isfile(os.path.join(beam_hub.resolve(good), "saved_model.pb"))


def test_packing_is_reproducible_across_requests(served):
    a = get(served.url + "/acme/fruit/1?tf-hub-format=compressed")[2]
    b = get(served.url + "/acme/fruit/1?tf-hub-format=compressed")[2]
    assert a == b


def test_head_range_and_conditional_requests(served):
    url = served.url + "/acme/fruit/1?tf-hub-format=compressed"
    _, headers, body = get(url)
    status, h, empty = get(url, method="HEAD")
    assert (
        status == 200
        and empty == b""
        and h["Content-Length"] == str(len(body))
        and h["ETag"] == headers["ETag"]
    )
    status, h, part = get(url, {"Range": "bytes=100-199"})
    assert status == 206 and part == body[100:200] and h["Content-Range"] == f"bytes 100-199/{len(body)}"
    status, _, tail = get(url, {"Range": "bytes=-50"})
    assert status == 206 and tail == body[-50:]
    status, _, whole = get(url, {"Range": "bytes=100-", "If-Range": '"not-the-etag"'})
    assert status == 200 and whole == body  # changed content: the whole body again
    assert get(url, {"Range": f"bytes={len(body)}-"})[0] == 416
    assert get(url, {"If-None-Match": headers["ETag"]})[0] == 304


def test_doc_pages(served):
    status, headers, page = get(served.url + "/acme/fruit/1")
    text = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Turns fruit into pets." in text and "fruit_to_pet" in text and "apples: float32[?, 3]" in text
    assert hashlib.sha256(get(served.url + "/acme/fruit/1?tf-hub-format=compressed")[2]).hexdigest() in text
    assert "beam_hub.ApplyHubModule(" in text and "hub.load(" in text
    index = get(served.url + "/")[2].decode()
    assert "href='/acme/fruit'" in index and "href='/acme/linear'" in index


def raw_get(url: str, path: str) -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/acme/../../secret.txt",
        "/acme/%2e%2e/%2e%2e/secret.txt",
        "/acme/escape?tf-hub-format=compressed",
        "/acme/fruit/1/saved_model.pb",
        "/acme/nothing/here",
    ],
)
def test_unknown_paths_and_traversal_give_404(served, path):
    response = raw_get(served.url, path)
    assert response.split(b"\r\n")[0].split()[1] in (b"404", b"400"), response[:200]
    assert b"outside the root" not in response


def test_twenty_concurrent_downloads_are_identical(served):
    url = served.url + "/acme/fruit/1?tf-hub-format=compressed"
    digests = []

    def fetch():
        digests.append(hashlib.sha256(get(url)[2]).hexdigest())

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(digests) == 20 and len(set(digests)) == 1


def test_uncompressed_protocol(root, bucket, gcs, tmp_path, monkeypatch):
    mirror = f"{bucket}/mirror"
    gcs.put(os.path.join(root, "acme", "fruit", "1"), f"{mirror[5:]}/acme/fruit/1", recursive=True)
    with_mirror = Served(root, "--uncompressed-base", mirror)
    plain = Served(root)
    try:
        status, headers, body = get(with_mirror.url + "/acme/fruit/1?tf-hub-format=uncompressed")
        assert (
            status == 303 and body.decode() == f"{mirror}/acme/fruit/1"
        )  # the 303's body names the location
        monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
        path = beam_hub.resolve(with_mirror.url + "/acme/fruit/1")
        assert Manifest.read(path).source == f"{mirror}/acme/fruit/1"  # copied from the mirror into the cache
        assert get(plain.url + "/acme/fruit/1?tf-hub-format=uncompressed")[0] == 406
        with pytest.raises(DownloadError, match="offers no uncompressed format"):
            beam_hub.resolve(plain.url + "/acme/fruit/1")
        monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "AUTO")
        assert os.path.isfile(os.path.join(beam_hub.resolve(plain.url + "/acme/fruit/1"), "saved_model.pb"))
    finally:
        with_mirror.stop()
        plain.stop()


def test_uncompressed_locations_go_through_the_shared_tier(root, bucket, gcs, tmp_path, monkeypatch):
    mirror = f"{bucket}/mirror"
    gcs.put(os.path.join(root, "acme", "fruit", "1"), f"{mirror[5:]}/acme/fruit/1", recursive=True)
    served = Served(root, "--uncompressed-base", mirror)
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    try:
        beam_hub.resolve(
            served.url + "/acme/fruit/1", cache_dir=f"{bucket}/shared", local_cache_dir=tmp_path / "a"
        )
    finally:
        served.stop()
    location_key = cache_key(f"{mirror}/acme/fruit/1")
    assert gcs.exists(f"{bucket[5:]}/shared/{location_key}.manifest.json")  # shared for the other machines


@pytest.mark.parametrize("base", ["file://{mirror}", "{mirror}", "memory://mirror"])
def test_a_server_cannot_point_the_client_at_local_files(root, tmp_path, monkeypatch, base):
    mirror = tmp_path / "private"
    shutil.copytree(os.path.join(root, "acme"), mirror / "acme", symlinks=True)
    served = Served(root, "--uncompressed-base", base.format(mirror=mirror))
    try:
        for fmt in ("UNCOMPRESSED", "AUTO"):
            monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", fmt)
            with pytest.raises(DownloadError, match="may only point at remote storage"):
                beam_hub.resolve(served.url + "/acme/fruit/1")
    finally:
        served.stop()


# --- resolver side, against the fault-injecting test server ---------------------------------------


def test_broken_download_resumes_with_range(server, one_input_tgz, cache_dir, caplog):
    import logging

    url = server.add("/m", one_input_tgz, mode="break")
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        path = beam_hub.resolve(url)
    assert server.gets("/m") == 2
    assert server.headers[-1]["Range"] == f"bytes={len(one_input_tgz) // 2}-"
    assert "Resuming" in caplog.text
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()


def test_broken_download_restarts_when_the_server_ignores_range(server, one_input_tgz, cache_dir, caplog):
    import logging

    url = server.add("/m", one_input_tgz, mode="norange")
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        path = beam_hub.resolve(url)
    assert server.gets("/m") == 2 and "Restarting" in caplog.text
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()


def test_etag_mismatch_caches_nothing(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz)
    server.routes["/m"].etag = '"' + "0" * 64 + '"'
    with pytest.raises(IntegrityError, match="ETag"):
        beam_hub.resolve(url)
    assert [n for n in os.listdir(cache_dir) if len(n) == 40] == []
    server.routes["/m"].etag = f'"{hashlib.sha256(one_input_tgz).hexdigest()}"'
    assert os.path.isdir(beam_hub.resolve(url))


def test_two_roots_with_the_same_paths_never_share_a_pack(modules_dir, tmp_path):
    """The default pack cache is the user's cache, keyed by content: ROOT2 never gets ROOT1's archive."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    etags = {}
    for name in ("one_input", "fruit"):
        module = tmp_path / name / "team" / "m" / "1"
        shutil.copytree(modules_dir[name], module)
        served = Served(str(tmp_path / name), pack_dir=None, env=env)
        try:
            status, headers, body = get(served.url + "/team/m/1?tf-hub-format=compressed")
        finally:
            served.stop()
        assert status == 200
        etags[name] = headers["ETag"].strip('"')
        assert etags[name] == hashlib.sha256(body).hexdigest()
        assert etags[name] == beam_hub.pack(
            str(module), str(tmp_path / f"{name}.tar.gz")
        )  # this root's module
    assert etags["one_input"] != etags["fruit"]
    packs = [p for p in (tmp_path / "xdg" / "beam_hub_serve" / "packs").rglob("*.tar.gz")]
    assert len(packs) == 2 and os.listdir(tmp_path / "tmp") == []


def test_an_absurd_range_is_416_without_a_traceback(root):
    served = Served(root)
    try:
        for header in ("bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000):
            status, headers, _ = get(served.url + "/acme/fruit/1?tf-hub-format=compressed", {"Range": header})
            assert status == 416 and headers["Content-Range"].startswith("bytes */")
    finally:
        log = served.stop()
    assert "Traceback" not in log and "Error" not in log


def test_a_location_naming_a_hub_page_is_refused_not_followed(root, monkeypatch):
    """An http(s) uncompressed location must be an archive: a hub page would ask again, forever."""
    served = Served(root, "--uncompressed-base", "http://127.0.0.1:9/elsewhere")
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    try:
        with pytest.raises(DownloadError, match="must name an archive"):
            beam_hub.resolve(served.url + "/acme/fruit/1")
    finally:
        served.stop()


def test_latest_redirects_to_the_newest_version(modules_dir, archives, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(modules_dir["one_input"], root / "acme" / "linear" / "1")
    shutil.copy(archives["one_input_x2"], root / "acme" / "linear" / "2.tar.gz")
    shutil.copytree(modules_dir["fruit"], root / "acme" / "linear" / "notes")  # not a version number
    shutil.copytree(modules_dir["one_input"], root / "acme" / "linear" / "3")  # still being copied:
    os.unlink(root / "acme" / "linear" / "3" / "variables" / "variables.index")  # not a version yet
    served = Served(str(root))
    try:
        status, headers, _ = get_no_redirect(served.url + "/acme/linear/latest?tf-hub-format=compressed")
        assert status == 302 and headers["Location"] == "/acme/linear/2?tf-hub-format=compressed"
        assert get_no_redirect(served.url + "/acme/nothing/latest")[0] == 404
        assert beam_hub.resolve_version(served.url + "/acme/linear@latest") == served.url + "/acme/linear/2"
        np.testing.assert_allclose(beam_hub.load(served.url + "/acme/linear@latest")(X), [[28.0]])
    finally:
        served.stop()


def test_a_named_alias_redirects_to_its_version_and_is_listed(modules_dir, tmp_path):
    root = tmp_path / "root"
    dest = str(root / "acme" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    beam_hub.set_alias(dest, "champion", 1)
    beam_hub.set_alias(dest, "candidate", 2)
    served = Served(str(root))
    try:
        status, headers, _ = get_no_redirect(served.url + "/acme/linear/champion?tf-hub-format=compressed")
        assert status == 302 and headers["Location"] == "/acme/linear/1?tf-hub-format=compressed"
        assert get_no_redirect(served.url + "/acme/linear/nobody")[0] == 404
        assert beam_hub.resolve_version(served.url + "/acme/linear@champion") == served.url + "/acme/linear/1"
        np.testing.assert_allclose(beam_hub.load(served.url + "/acme/linear@champion")(X), [[14.0]])
        with pytest.raises(ModuleNotFoundAtHandleError, match="the server has no alias 'nobody'"):
            beam_hub.resolve_version(served.url + "/acme/linear@nobody")
        _, _, body = get(served.url + "/api/modules/acme/linear")
        assert json.loads(body)["aliases"] == {
            "candidate": {"version": "2", "handle": served.url + "/acme/linear/2"},
            "champion": {"version": "1", "handle": served.url + "/acme/linear/1"},
        }
        _, _, html = get(served.url + "/acme/linear")
        assert "<h2>Aliases</h2>" in html.decode() and f"{served.url}/acme/linear/champion" in html.decode()
        beam_hub.set_alias(dest, "champion", 2)  # moved while serving: the next request sees it
        assert get_no_redirect(served.url + "/acme/linear/champion")[1]["Location"] == "/acme/linear/2"
    finally:
        served.stop()
