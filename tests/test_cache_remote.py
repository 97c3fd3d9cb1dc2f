"""The shared cache tier against a real GCS API emulator (fake-gcs-server) on 127.0.0.1."""

import json
import logging
import multiprocessing
import os
import signal
import time

import beam_hub
import workers
from beam_hub.cache import Manifest, cache_key


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


def test_a_forbidden_bucket_falls_back(server, one_input_tgz, gcs, tmp_path, monkeypatch):
    """Behind a proxy that answers 403 for one bucket (the emulator itself has no permissions)."""
    import http.client
    import http.server
    import threading

    upstream = os.environ["STORAGE_EMULATOR_HOST"].split("//")[1]

    class Forbidding(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if "forbidden-bucket" in self.path:
                data = json.dumps(
                    {"error": {"code": 403, "message": "caller lacks storage.objects.get"}}
                ).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            conn = http.client.HTTPConnection(upstream, timeout=60)
            conn.request(
                self.command,
                self.path,
                body=body,
                headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
            )
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidding)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = server.add("/m", one_input_tgz)
    monkeypatch.setenv(
        "STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.server_address[1]}"
    )  # for the child
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(
        target=workers.resolve_tiered,
        args=(None, url, "gs://forbidden-bucket/cache", str(tmp_path / "local"), queue),
    )
    child.start()
    status, path = queue.get(timeout=120)
    child.join(timeout=60)
    proxy.shutdown()
    assert status == "ok", path
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert server.gets("/m") == 1
