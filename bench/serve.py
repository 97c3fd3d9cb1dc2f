"""Download throughput from `beam-hub serve` over loopback, against a plain file copy as the limit.

Serves one module archive (default 64 MB of incompressible weights) and measures, in one run:
  copy      reading the archive file and writing it to a new file (the local limit)
  serve x1  one client downloading it (urllib, streamed in 1 MiB reads)
  serve x16 sixteen clients at once (threads); aggregate throughput and per-client spread
Prints MB/s and the ratio to the file copy.

    python bench/serve.py [--mb 64] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from _workload import build_weights

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def download(url: str) -> int:
    n = 0
    with urllib.request.urlopen(url, timeout=300) as r:
        while block := r.read(1 << 20):
            n += len(block)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-serve-")
    server = None
    try:
        from beam_hub.archive import pack

        build_weights(os.path.join(work, "src"), args.mb)
        root = os.path.join(work, "root", "acme", "weights")
        os.makedirs(root)
        archive = os.path.join(root, "1.tar.gz")
        pack(os.path.join(work, "src"), archive)
        size = os.path.getsize(archive)
        mb = size / 2**20

        copies = []
        for i in range(3):
            t = time.perf_counter()
            shutil.copyfile(archive, os.path.join(work, f"copy{i}"))
            copies.append(time.perf_counter() - t)
        copy_rate = mb / statistics.median(copies)

        server = subprocess.Popen(
            [sys.executable, "-m", "beam_hub", "serve", os.path.join(work, "root"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = server.stdout.readline().split(" at ")[1].strip() + "acme/weights/1?tf-hub-format=compressed"
        download(url)  # warm: digest computed once
        singles = []
        for _ in range(3):
            t = time.perf_counter()
            assert download(url) == size
            singles.append(time.perf_counter() - t)
        single_rate = mb / statistics.median(singles)

        times: list[float] = []

        def client() -> None:
            t = time.perf_counter()
            assert download(url) == size
            times.append(time.perf_counter() - t)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        multi_rate = mb * args.clients / wall

        print(f"archive {mb:.1f} MB")
        print(f"  file copy            {copy_rate:8.0f} MB/s   ratio 1.00")
        print(f"  serve, 1 client      {single_rate:8.0f} MB/s   ratio {single_rate / copy_rate:.2f}")
        print(
            f"  serve, {args.clients} clients    {multi_rate:8.0f} MB/s aggregate   ratio {multi_rate / copy_rate:.2f}"
            f"   (per client {min(times):.2f}-{max(times):.2f}s)"
        )
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
