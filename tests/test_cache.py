import glob
import logging
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import beam_hub
import workers
from beam_hub import settings
from beam_hub.cache import LocalCache, Manifest, cache_key
from beam_hub.errors import CacheError


def staging(cache_dir):
    return glob.glob(os.path.join(cache_dir, "*.tmp"))


# --- location -----------------------------------------------------------------------------------


def test_cache_location_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "env"))
    assert settings.default_cache_dir() == str(tmp_path / "env")
    assert LocalCache(tmp_path / "arg").root == str(tmp_path / "arg")
    monkeypatch.delenv("TFHUB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.default_cache_dir() == str(tmp_path / "xdg" / "beam_hub")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings.default_cache_dir() == str(tmp_path / "home" / ".cache" / "beam_hub")


def test_cache_dir_argument_wins_over_env(server, one_input_tgz, tmp_path):
    url = server.add("/m", one_input_tgz)
    path = beam_hub.resolve(url, cache_dir=tmp_path / "mine")
    assert path == str(tmp_path / "mine" / cache_key(url))


def test_unwritable_cache_is_a_clear_error(server, one_input_tgz, tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file"
        target.write_text("not a dir")
        with pytest.raises(CacheError, match="TFHUB_CACHE_DIR"):
            beam_hub.resolve(server.add("/m", one_input_tgz), cache_dir=target / "sub")
    else:
        os.chmod(tmp_path, 0o500)
        with pytest.raises(CacheError, match="TFHUB_CACHE_DIR"):
            beam_hub.resolve(server.add("/m", one_input_tgz), cache_dir=tmp_path / "sub")


# --- damaged entries ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete_variables", "truncate", "manifest_garbage"])
def test_damaged_entry_is_fetched_again_with_a_warning(server, one_input_tgz, cache_dir, caplog, damage):
    url = server.add("/m", one_input_tgz)
    path = beam_hub.resolve(url)
    data = glob.glob(os.path.join(path, "variables", "variables.data-*"))[0]
    if damage == "delete_variables":
        os.unlink(data)
    elif damage == "truncate":
        with open(data, "r+b") as f:
            f.truncate(3)
    else:
        with open(os.path.join(path, ".beam_hub_manifest.json"), "w") as f:
            f.write("{not json")
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        again = beam_hub.resolve(url)
    assert again == path
    assert server.gets("/m") == 2
    assert "cannot be used" in caplog.text
    assert Manifest.read(path).quick_problems(path) == []
    assert LocalCache(cache_dir).verify() == {path: []}


def test_verify_deep_finds_same_size_corruption(server, one_input_tgz, cache_dir):
    path = beam_hub.resolve(server.add("/m", one_input_tgz))
    data = glob.glob(os.path.join(path, "variables", "variables.data-*"))[0]
    with open(data, "r+b") as f:
        f.write(b"\xff\xff")
    assert LocalCache(cache_dir).verify(deep=False) == {path: []}
    assert "content differs" in LocalCache(cache_dir).verify(deep=True)[path][0]


# --- interoperability with tensorflow_hub -------------------------------------------------------


def test_tensorflow_hub_reuses_our_entries(server, one_input_tgz, cache_dir, monkeypatch):
    hub = pytest.importorskip("tensorflow_hub")
    url = server.add("/acme/m/1", one_input_tgz)
    ours = beam_hub.resolve(url)
    assert hub.resolve(url) == ours
    assert server.gets("/acme/m/1") == 1
    assert hub.load(url).signatures["default"] is not None


def test_we_reuse_tensorflow_hub_entries(server, one_input_tgz, cache_dir, monkeypatch):
    hub = pytest.importorskip("tensorflow_hub")
    url = server.add("/acme/m/1", one_input_tgz)
    theirs = hub.resolve(url)
    assert theirs == os.path.join(cache_dir, cache_key(url))
    assert beam_hub.resolve(url) == theirs
    assert server.gets("/acme/m/1") == 1
    manifest = Manifest.read(theirs)  # adopted: from now on checked like our own entries
    assert manifest.adopted and "saved_model.pb" in manifest.files
    assert [e.handle for e in LocalCache(cache_dir).entries()] == [url]


def test_damaged_tensorflow_hub_entry_is_fetched_again(server, one_input_tgz, cache_dir):
    hub = pytest.importorskip("tensorflow_hub")
    url = server.add("/acme/m/1", one_input_tgz)
    theirs = hub.resolve(url)
    for f in glob.glob(os.path.join(theirs, "variables", "*")):
        os.unlink(f)  # what a temp cleaner leaves behind (tensorflow/hub#896)
    assert beam_hub.resolve(url) == theirs
    assert server.gets("/acme/m/1") == 2
    assert Manifest.read(theirs).quick_problems(theirs) == []


# --- concurrency --------------------------------------------------------------------------------


def test_eight_processes_download_once(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz, mode="slow")
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(8), ctx.Queue()
    procs = [
        ctx.Process(target=workers.resolve_after_barrier, args=(barrier, url, cache_dir, queue))
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r[0] for r in results] == ["ok"] * 8, results
    assert {r[2] for r in results} == {os.path.join(cache_dir, cache_key(url))}
    assert server.gets("/m") == 1
    assert staging(cache_dir) == []


def test_killed_downloader_does_not_block_the_next_resolve(server, one_input_tgz, cache_dir, monkeypatch):
    url = server.add("/m", one_input_tgz, mode="stall")
    ctx = multiprocessing.get_context("spawn")
    victim = ctx.Process(target=workers.resolve, args=(url, cache_dir))
    victim.start()
    for _ in range(600):
        if server.gets("/m") and staging(cache_dir):
            break
        time.sleep(0.05)
    assert staging(cache_dir), "the victim never started downloading"
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    assert not os.path.exists(os.path.join(cache_dir, cache_key(url)))  # nothing looks complete
    server.routes["/m"].mode = "ok"
    monkeypatch.setenv("BEAM_HUB_LOCK_TIMEOUT", "5")  # a stale lock would raise CacheError
    path = beam_hub.resolve(url)
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert staging(cache_dir) == []  # the victim's staging was cleaned up


def test_live_lock_holder_makes_others_wait_then_reuse(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz, mode="slow")  # the first resolver holds the lock ~1 s
    ctx = multiprocessing.get_context("spawn")
    queues = [ctx.Queue(), ctx.Queue()]
    first = ctx.Process(target=workers.resolve_and_report, args=(url, cache_dir, queues[0]))
    first.start()
    for _ in range(600):
        if server.gets("/m") and staging(cache_dir):
            break
        time.sleep(0.05)
    assert server.gets("/m") == 1 and staging(cache_dir), "the first resolver never started downloading"
    second = ctx.Process(target=workers.resolve_and_report, args=(url, cache_dir, queues[1]))
    second.start()  # while the first one holds the lock
    (status_a, path_a, done_a), (status_b, path_b, done_b) = (q.get(timeout=120) for q in queues)
    first.join(timeout=60)
    second.join(timeout=60)
    assert (status_a, status_b) == ("ok", "ok"), (path_a, path_b)
    assert path_a == path_b == os.path.join(cache_dir, cache_key(url))
    assert server.gets("/m") == 1  # the second waited for the first and reused its entry
    assert done_b >= done_a


def test_waiting_longer_than_the_lock_timeout_is_a_clear_error(server, one_input_tgz, cache_dir, monkeypatch):
    url = server.add("/m", one_input_tgz)
    monkeypatch.setenv("BEAM_HUB_LOCK_TIMEOUT", "0.5")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with LocalCache(cache_dir).lock(url):  # a live holder that never finishes
        p = ctx.Process(target=workers.resolve_and_report, args=(url, cache_dir, queue))
        p.start()
        status, message, _ = queue.get(timeout=120)
        p.join(timeout=60)
    assert status == "error" and message.startswith("CacheError: Waited")
    assert "BEAM_HUB_LOCK_TIMEOUT" in message and url in message
    assert server.gets("/m") == 0


# --- management ---------------------------------------------------------------------------------


def test_list_prune_clear(server, one_input_tgz, cache_dir):
    a = beam_hub.resolve(server.add("/a", one_input_tgz))
    b = beam_hub.resolve(server.add("/b", one_input_tgz))
    cache = LocalCache(cache_dir)
    listed = {e.path: e for e in cache.entries()}
    assert set(listed) == {a, b}
    assert listed[a].handle == server.url + "/a" and listed[a].size > 0
    old = time.time() - 10 * 86400
    os.utime(os.path.join(a, ".beam_hub_manifest.json"), (old, old))
    assert [e.path for e in cache.prune(7)] == [a]
    assert not os.path.exists(a) and not os.path.exists(a + ".descriptor.txt") and os.path.exists(b)
    beam_hub.resolve(server.url + "/b")  # a hit refreshes last use only hourly; b is fresh anyway
    assert [e.path for e in cache.clear()] == [b]
    assert cache.entries() == []


def test_verify_removes_damaged_entries_so_the_next_resolve_heals(server, one_input_tgz, cache_dir):
    """A file changed in place at the same size: verify finds it, and the next resolve really refetches."""
    from helpers import run_cli

    url = server.add("/m", one_input_tgz)
    path = beam_hub.resolve(url)
    data = glob.glob(os.path.join(path, "variables", "variables.data-*"))[0]
    with open(data, "r+b") as f:
        f.write(b"\xde\xad")
    with pytest.raises(beam_hub.errors.ModuleLoadError) as e:
        beam_hub.load(url)  # the stat check passes (same size); TensorFlow's checksum fails
    assert f"cached copy at {path} is damaged" in str(e.value) and "beam-hub cache verify" in str(e.value)
    proc = run_cli("cache", "verify", check=False)
    assert proc.returncode == 1 and "removed: its next resolve fetches it again" in proc.stdout
    assert "0 whole, 1 damaged, 1 removed" in proc.stdout and not os.path.exists(path)
    assert beam_hub.load(url)(np.ones((1, 3), np.float32)).tolist() == [[6.0]]
    assert server.gets("/m") == 2
    assert "1 whole, 0 damaged" in run_cli("cache", "verify").stdout


def test_a_full_disk_is_one_clear_line_and_leaves_no_stray_files(server, tmp_path):
    """The cache on a 1 MiB tmpfs (a private mount namespace), a module of 3 MiB of weights."""
    import shutil
    import subprocess
    import sys

    import modules
    from helpers import REPO

    if not shutil.which("unshare"):
        pytest.skip("needs util-linux's unshare to mount a small tmpfs")
    module = modules.make_weights(str(tmp_path / "big"), mb=3)
    beam_hub.pack(module, str(tmp_path / "big.tar.gz"))
    url = server.add("/big", (tmp_path / "big.tar.gz").read_bytes())
    small = tmp_path / "small"
    small.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m none {small} || exit 77; "
        f'{sys.executable} -m beam_hub --cache-dir {small}/cache resolve {url}; echo "exit=$?"; '
        f"ls -A {small}/cache"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if proc.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    out = proc.stdout.splitlines()
    assert "exit=2" in out, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert err[0].startswith(f"beam-hub: error: No space left on the disk of the module cache {small}/cache")
    assert "bytes were written" in err[0] and "bytes are free" in err[0]
    leftovers = out[out.index("exit=2") + 1 :]
    assert [n for n in leftovers if not n.endswith(".beam_hub.lock")] == []  # no staging, no temp descriptor
