"""Fetching a SavedModel from a Hugging Face Hub: beam-hub's hf:// against huggingface_hub's
snapshot_download, in one run, from the same local stub of the Hub (tests/hf_stub.py).

The repo holds a SavedModel (one variables shard) and eight asset files; LFS files are served by a
second server the Hub redirects to, as on huggingface.co. Measured, interleaved, medians:
  1. cold fetch into an empty cache, with no added latency and with --latency seconds before each
     file's first byte (a far-away Hub): beam_hub.resolve("hf://...") vs snapshot_download. beam-hub
     also checks every byte against the listing (sha256 of LFS files, git blob id of the others);
     snapshot_download does not.
  2. warm: a branch handle (one API call each) and a commit handle (beam-hub asks the Hub nothing).
Prints each figure and the ratio (ours / baseline; < 1 means we are faster).

    python bench/hf.py [--mb 128] [--reps 3] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
sys.path.insert(0, TESTS)

ASSETS = 8


def build_repo_files(work: str, mb: int) -> dict[str, bytes]:
    """A SavedModel of about ``mb`` MB: half in the variables shard, half in ASSETS asset files."""
    import tensorflow as tf

    from hf_stub import read_tree

    rng = np.random.default_rng(0)

    class Weights(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.standard_normal(mb * 2**20 // 8, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            return {"default": x * self.w[0]}

    path = os.path.join(work, "module")
    m = Weights()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    files = read_tree(path)
    for i in range(ASSETS):
        files[f"assets/table-{i}.bin"] = rng.bytes(mb * 2**20 // (2 * ASSETS))
    return files


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def start_hub(directory: str, latency: float) -> tuple[subprocess.Popen, str, str]:
    """The stub Hub in its own process (so that it does not share the client's GIL)."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(TESTS, "hf_stub.py"), "acme/big", directory, str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url, commit = proc.stdout.readline().split()
    return proc, url, commit


def requests_seen(url: str) -> int:
    with urllib.request.urlopen(url + "/_requests") as r:
        return int(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds before each file's first byte")
    args = ap.parse_args()

    from huggingface_hub import snapshot_download

    import beam_hub

    work = tempfile.mkdtemp(prefix="bench-hf-")
    hubs = []
    try:
        files = build_repo_files(work, args.mb)
        repo = os.path.join(work, "repo")
        for name, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(repo, name)), exist_ok=True)
            with open(os.path.join(repo, name), "wb") as f:
                f.write(data)
        total = sum(len(v) for v in files.values())
        os.environ["BEAM_HUB_PROGRESS"] = "0"
        print(f"repo: {len(files)} files, {total / 2**20:.1f} MB; the stub Hub runs in its own process")

        def ours(url: str, cache: str, handle: str = "hf://acme/big") -> None:
            os.environ["HF_ENDPOINT"] = url
            beam_hub.resolve(handle, cache_dir=cache)

        def theirs(url: str, cache: str, revision: str | None = None) -> None:
            snapshot_download("acme/big", revision=revision, endpoint=url, cache_dir=cache, token=False)

        for latency in (0.0, args.latency):
            proc, url, commit = start_hub(repo, latency)
            hubs.append(proc)
            ours_s, theirs_s = [], []
            for rep in range(args.reps):
                for name, fn, out in (("ours", ours, ours_s), ("theirs", theirs, theirs_s)):
                    cache = os.path.join(work, f"cold-{name}-{latency}-{rep}")
                    out.append(timed(lambda fn=fn, cache=cache, url=url: fn(url, cache)))
                    shutil.rmtree(cache, ignore_errors=True)
            a, b = statistics.median(ours_s), statistics.median(theirs_s)
            mbs = total / 2**20
            print(
                f"cold fetch, {latency * 1000:.0f} ms per file: beam-hub {a:.2f}s ({mbs / a:.0f} MB/s, every byte "
                f"checked)  snapshot_download {b:.2f}s ({mbs / b:.0f} MB/s)  ratio {a / b:.2f}"
            )

        warm_ours, warm_theirs = os.path.join(work, "warm-ours"), os.path.join(work, "warm-theirs")
        ours(url, warm_ours)
        theirs(url, warm_theirs)
        for label, fo, ft in (
            ("branch", lambda: ours(url, warm_ours), lambda: theirs(url, warm_theirs)),
            (
                "commit",
                lambda: ours(url, warm_ours, f"hf://acme/big@{commit}"),
                lambda: theirs(url, warm_theirs, commit),
            ),
        ):
            seen = requests_seen(url)
            a = statistics.median(timed(fo) for _ in range(20))
            ours_requests = (requests_seen(url) - seen - 1) / 20
            seen = requests_seen(url)
            b = statistics.median(timed(ft) for _ in range(20))
            theirs_requests = (requests_seen(url) - seen - 1) / 20
            print(
                f"warm {label} handle: beam-hub {a * 1000:.1f} ms ({ours_requests:.0f} requests)  "
                f"snapshot_download {b * 1000:.1f} ms ({theirs_requests:.0f} requests)  ratio {a / b:.2f}"
            )
    finally:
        for proc in hubs:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
