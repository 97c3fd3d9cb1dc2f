"""The hub's index with thousands of published modules: `beam-hub serve` over a root of N archives,
each with a model card (README with front matter) inside.

Measures, against one server process on 127.0.0.1 (medians of --rounds):
  first index       GET / right after start: every card read from its archive and parsed once
  index             GET / once the cards are known (what every later visitor waits for)
  search            GET /?q=... and GET /?tag=...
  api               GET /api/modules?q=...
  baseline          GET of a static file as large as the index page (the server's floor)

    python bench/hub.py [--modules 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

CARD = """---
task: {task}
tags: [{tag}, bench]
license: apache-2.0
---
# Model {i}

A model card for model {i}, with a table.

| input | dtype |
|---|---|
| x | float32 |
"""


def archive_bytes(i: int) -> bytes:
    """A small tar.gz holding a saved_model.pb placeholder and a README (the index reads only the card)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("saved_model.pb", b"\0" * 64),
            (
                "README.md",
                CARD.format(
                    i=i, task=("text-embedding", "image-classification")[i % 2], tag=f"t{i % 37}"
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fetch(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - start, len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-hub-")
    proc = None
    try:
        root = os.path.join(work, "root")
        for i in range(args.modules):
            model = os.path.join(root, f"team{i % 50}", f"model{i}")
            os.makedirs(model)
            with open(os.path.join(model, "1.tar.gz"), "wb") as f:
                f.write(archive_bytes(i))
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beam_hub",
                "serve",
                root,
                "--port",
                "0",
                "--pack-dir",
                os.path.join(work, "p"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=repo,
        )
        url = proc.stdout.readline().split(" at ")[1].strip().rstrip("/")
        first, size = fetch(url + "/")
        static = os.path.join(root, "static.tar.gz")  # served as a pre-packed module archive
        with open(static, "wb") as f:
            f.write(os.urandom(size))
        rows = {
            "index": url + "/",
            "index, page 50": url + "/?page=50",
            "search ?q=model1": url + "/?q=model1",
            "filter ?tag=t7": url + "/?tag=t7",
            "api ?q=model1": url + "/api/modules?q=model1",
            f"baseline: a {size / 1e3:.0f} KB file": url + "/static?tf-hub-format=compressed",
        }
        times = {k: [] for k in rows}
        for _ in range(args.rounds):
            for label, u in rows.items():
                times[label].append(fetch(u)[0])
        base = statistics.median(times[f"baseline: a {size / 1e3:.0f} KB file"])
        print(f"{args.modules} published modules (one card each); index page {size / 1e3:.0f} KB")
        print(f"  {'first index (every card read)':36s} {first * 1000:8.0f} ms")
        for label, ts in times.items():
            t = statistics.median(ts)
            print(f"  {label:36s} {t * 1000:8.1f} ms  {t / base:6.1f}x the baseline")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
