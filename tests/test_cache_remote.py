"""The shared cache tier against a real GCS API emulator (fake-gcs-server) on 127.0.0.1."""

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time

import pytest

import beam_hub
import workers
from beam_hub.cache import Manifest, cache_key
from gcsproxy import GcsProxy


def spawn_resolvers(n, url, cache, local_root):
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=workers.resolve_tiered, args=(barrier, url, cache, f"{local_root}/{i}", queue))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def test_many_machines_fetch_from_the_origin_once(server, one_input_tgz, bucket, gcs, tmp_path):
    url = server.add("/m", one_input_tgz, mode="slow")
    cache = f"{bucket}/hub-cache"
    results = spawn_resolvers(4, url, cache, str(tmp_path / "local"))
    assert [r[0] for r in results] == ["ok"] * 4, results
    assert server.gets("/m") == 1
    key = cache_key(url)
    marker = json.loads(gcs.cat_file(f"{cache[5:]}/{key}.manifest.json"))
    assert marker["handle"] == url and "saved_model.pb" in marker["files"]
    assert not gcs.exists(f"{cache[5:]}/{key}.lock.json")
    # a fifth machine with an empty local disk fetches nothing from the origin
    path = beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "fifth")
    assert server.gets("/m") == 1
    assert Manifest.read(path).files == Manifest.from_json(marker).files
    # and a second resolve there is a local hit
    assert beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "fifth") == path


def test_tfhub_cache_dir_may_be_the_shared_url(server, one_input_tgz, bucket, monkeypatch, tmp_path):
    url = server.add("/m", one_input_tgz)
    monkeypatch.setenv("TFHUB_CACHE_DIR", f"{bucket}/c")
    monkeypatch.setenv("BEAM_HUB_LOCAL_CACHE_DIR", str(tmp_path / "local-a"))
    a = beam_hub.resolve(url)
    assert a.startswith(str(tmp_path / "local-a"))
    monkeypatch.setenv("BEAM_HUB_LOCAL_CACHE_DIR", str(tmp_path / "local-b"))
    assert beam_hub.resolve(url).startswith(str(tmp_path / "local-b"))
    assert server.gets("/m") == 1


def test_a_damaged_shared_entry_is_rebuilt(server, one_input_tgz, bucket, gcs, tmp_path, caplog):
    url = server.add("/m", one_input_tgz)
    cache = f"{bucket}/c"
    beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "a")
    key = cache_key(url)
    shard = [p for p in gcs.find(f"{cache[5:]}/{key}") if "variables.data" in p][0]
    gcs.pipe_file(shard, b"garbage")
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        path = beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "b")
    assert "does not match its manifest" in caplog.text
    assert server.gets("/m") == 2
    assert Manifest.read(path).quick_problems(path) == []
    assert gcs.cat_file(shard) != b"garbage"  # rebuilt for the next machine
    beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "c")
    assert server.gets("/m") == 2


def test_an_unusable_shared_cache_falls_back_with_one_warning(server, one_input_tgz, gcs, tmp_path, caplog):
    url = server.add("/m", one_input_tgz)
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        a = beam_hub.resolve(url, cache_dir="gs://no-such-bucket-here/c", local_cache_dir=tmp_path / "a")
        beam_hub.resolve(url + "?v=2", cache_dir="gs://no-such-bucket-here/c", local_cache_dir=tmp_path / "a")
    assert os.path.isfile(os.path.join(a, "saved_model.pb"))
    assert caplog.text.count("cannot be used") == 1
    assert server.gets("/m") == 2


def test_apply_hub_module_on_two_workers_with_a_shared_cache(server, one_input_tgz, bucket, tmp_path):
    import apache_beam as beam
    import numpy as np
    from apache_beam.testing.util import assert_that, equal_to

    from helpers import counters, run_pipeline

    url = server.add("/m", one_input_tgz)
    rows = [(i, np.full(3, i, np.float32)) for i in range(200)]

    def build(p):
        out = (
            p
            | beam.Create(rows)
            | beam.Reshuffle()
            | beam_hub.ApplyHubModule(url, keyed=True, max_batch_size=16)
            | beam.MapTuple(lambda k, a: (k, float(a[0])))
        )
        assert_that(out, equal_to([(i, 6.0 * i) for i in range(200)]))

    metrics = counters(
        run_pipeline(
            build,
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
            f"--hub_cache_dir={bucket}/c",
            f"--hub_local_cache_dir={tmp_path}/local",
        )
    )
    assert metrics["inference_elements"] == 200 and metrics["module_loads"] == 2
    assert server.gets("/m") == 1


def test_a_killed_lock_owner_is_taken_over(server, one_input_tgz, bucket, gcs, tmp_path, monkeypatch):
    url = server.add("/m", one_input_tgz, mode="stall")
    cache = f"{bucket}/c"
    monkeypatch.setenv("BEAM_HUB_REMOTE_LOCK_TTL", "2")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    owner = ctx.Process(target=workers.resolve_tiered, args=(None, url, cache, str(tmp_path / "dead"), queue))
    owner.start()
    lock = f"{cache[5:]}/{cache_key(url)}.lock.json"
    for _ in range(600):
        if server.gets("/m") and gcs.exists(lock):
            break
        time.sleep(0.05)
    assert gcs.exists(lock), "the owner never took the lock"
    os.kill(owner.pid, signal.SIGKILL)
    owner.join()
    server.routes["/m"].mode = "ok"
    start = time.monotonic()
    path = beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "next")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert time.monotonic() - start < 60  # bounded by the TTL, not a hang
    assert server.gets("/m") == 2 and not gcs.exists(lock)


@pytest.fixture
def proxy(gcs):
    """The GCS emulator behind a proxy that injects faults (see gcsproxy.py)."""
    p = GcsProxy(os.environ["STORAGE_EMULATOR_HOST"])
    yield p
    p.stop()


def resolve_in_child(url, cache, local, env):
    """Resolve in a fresh process whose gcsfs talks to ``env``'s STORAGE_EMULATOR_HOST."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # spawn copies the environment at start
    try:
        child = ctx.Process(target=workers.resolve_tiered_logged, args=(url, cache, str(local), queue))
        child.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result = queue.get(timeout=120)  # a hang fails here
    child.join(timeout=60)
    return result


def test_a_forbidden_bucket_falls_back(server, one_input_tgz, proxy, tmp_path):
    url = server.add("/m", one_input_tgz)
    proxy.fault = lambda method, path, query: ("status", 403) if "forbidden-bucket" in path else None
    status, path, warnings = resolve_in_child(
        url, "gs://forbidden-bucket/cache", tmp_path / "local", {"STORAGE_EMULATOR_HOST": proxy.url}
    )
    assert status == "ok", path
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert server.gets("/m") == 1
    assert len([w for w in warnings if "cannot be used" in w]) == 1


@pytest.mark.parametrize("stalled", ["the first request", "every request"])
def test_an_unanswering_shared_tier_falls_back_to_the_origin(
    server, one_input_tgz, bucket, proxy, tmp_path, stalled
):
    url = server.add("/m", one_input_tgz)
    seen = []

    def fault(method, path, query):
        seen.append(path)
        return "stall" if stalled == "every request" or len(seen) == 1 else None

    proxy.fault = fault
    env = {"STORAGE_EMULATOR_HOST": proxy.url, "BEAM_HUB_READ_TIMEOUT": "2", "BEAM_HUB_CONNECT_TIMEOUT": "2"}
    status, path, warnings = resolve_in_child(url, f"{bucket}/c", tmp_path / "local", env)
    assert status == "ok", path
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert server.gets("/m") == 1
    assert proxy.count("stall") >= 1
    fell_back = [w for w in warnings if "cannot be used" in w]
    if stalled == "every request":
        (warning,) = fell_back
        assert "SharedTierTimeout" in warning and "BEAM_HUB_READ_TIMEOUT" in warning
    else:  # gcsfs's own retry may recover within the deadline; if not, one warning says why
        assert len(fell_back) <= 1 and all("SharedTierTimeout" in w for w in fell_back)


@pytest.mark.parametrize("fault", ["apply-then-503", "apply-then-drop"])
def test_a_worker_recognises_its_own_lock_when_the_answer_was_lost(
    server, one_input_tgz, bucket, gcs, proxy, tmp_path, fault
):
    url = server.add("/m", one_input_tgz)
    cache = f"{bucket}/c"
    lock = f"{cache_key(url)}.lock.json"
    faults = []

    def inject(method, path, query):
        # the first create-if-absent upload is the lock (the marker is the second)
        if method == "POST" and query.get("ifGenerationMatch") == "0" and not faults:
            faults.append(fault)
            return fault
        return None

    proxy.fault = inject
    # with a long TTL, waiting out its own lock would take a minute: the queue's timeout catches that
    env = {"STORAGE_EMULATOR_HOST": proxy.url, "BEAM_HUB_REMOTE_LOCK_TTL": "600"}
    status, path, warnings = resolve_in_child(url, cache, tmp_path / "local", env)
    assert status == "ok", path
    assert faults == [fault] and proxy.count(fault) == 1
    assert server.gets("/m") == 1  # fetched from the origin once, by the lock's real owner
    assert gcs.exists(f"{cache[5:]}/{cache_key(url)}.manifest.json")  # and shared
    assert not gcs.exists(f"{cache[5:]}/{lock}")  # and the lock released
    assert not [w for w in warnings if "cannot be used" in w]


def test_a_marker_naming_paths_outside_the_entry_is_hostile(
    server, one_input_tgz, bucket, gcs, tmp_path, caplog
):
    url = server.add("/m", one_input_tgz)
    cache = f"{bucket}/c"
    key = cache_key(url)
    bad = "../../../victim/pwned.txt"
    marker = {
        "handle": url,
        "source": url,
        "files": {
            "saved_model.pb": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
            bad: {"size": 5, "sha256": hashlib.sha256(b"pwned").hexdigest()},
        },
    }
    gcs.pipe_file(f"{cache[5:]}/{key}/saved_model.pb", b"abc")
    gcs.pipe_file(f"{cache[5:]}/{key}/{bad}", b"pwned")
    gcs.pipe_file(f"{cache[5:]}/{key}.manifest.json", json.dumps(marker).encode())
    local = tmp_path / "deep" / "er" / "local"
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        path = beam_hub.resolve(url, cache_dir=cache, local_cache_dir=local)
    assert not list(tmp_path.rglob("pwned.txt"))  # nothing written outside (or inside) the cache
    assert server.gets("/m") == 1  # fetched from its origin instead
    assert Manifest.read(path).quick_problems(path) == [] and "saved_model.pb" in Manifest.read(path).files
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and bad in warnings[0], warnings
    # the hostile marker was replaced by a good one for the next machine
    assert bad not in json.loads(gcs.cat_file(f"{cache[5:]}/{key}.manifest.json"))["files"]


def test_an_oversized_marker_is_not_read_whole(
    server, one_input_tgz, bucket, gcs, tmp_path, caplog, monkeypatch
):
    import beam_hub.cache.remote as remote

    monkeypatch.setattr(remote, "MAX_MARKER_BYTES", 4096)  # the real cap is 32 MiB: too big for a test
    url = server.add("/m", one_input_tgz)
    cache = f"{bucket}/c"
    marker = json.dumps({"handle": url, "files": {}, "padding": "x" * 100_000}).encode()
    gcs.pipe_file(f"{cache[5:]}/{cache_key(url)}.manifest.json", marker)
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        path = beam_hub.resolve(url, cache_dir=cache, local_cache_dir=tmp_path / "local")
    assert os.path.isfile(os.path.join(path, "saved_model.pb")) and server.gets("/m") == 1
    assert "larger than 4096 bytes" in caplog.text
