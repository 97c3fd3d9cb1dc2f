"""Resolve and apply: beam-hub against tensorflow_hub and raw TensorFlow, in one run.

Measures, interleaved and on the same module served over loopback HTTP:
  1. cold resolve (download + verify + extract into an empty cache): beam_hub vs tensorflow_hub
  2. warm resolve (a cache hit; beam_hub also checks every file's size against the manifest)
  3. apply: HubModule.__call__ on numpy batches vs the raw signature call (3 x Dense 1024 over 256)
  4. start-up of `beam-hub resolve` on a hit vs `python -c "import tensorflow_hub; hub.resolve(...)"`
Prints each figure and the ratio (ours / baseline; < 1 means we are faster).

    python bench/resolve.py [--mb 64] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from _workload import serve_dir, timed


def build_module(path: str, mb: int) -> None:
    import tensorflow as tf

    class Mlp(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            self.layers = [
                tf.Variable(rng.standard_normal((256 if i == 0 else 1024, 1024), np.float32) * 0.03)
                for i in range(3)
            ]
            # incompressible padding so the archive has the requested size
            n = max(0, mb * 2**20 - 3 * 1024 * 1024 * 4) // 4
            self.padding = tf.Variable(rng.standard_normal(n, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
        def serve(self, x):
            for w in self.layers:
                x = tf.nn.relu(tf.matmul(x, w))
            return {"default": x}

    m = Mlp()
    tf.saved_model.save(m, path, signatures={"default": m.serve})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="module size in MB")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import tensorflow as tf
    import tensorflow_hub as hub

    import beam_hub

    work = tempfile.mkdtemp(prefix="bench-resolve-")
    try:
        src = os.path.join(work, "module")
        build_module(src, args.mb)
        sha = beam_hub.pack(src, os.path.join(work, "www", "m.tar.gz"))
        size = os.path.getsize(os.path.join(work, "www", "m.tar.gz"))
        httpd, base = serve_dir(os.path.join(work, "www"))
        url = f"{base}/m.tar.gz"
        print(f"module: {size / 2**20:.1f} MB tar.gz (sha256 {sha[:12]}...), served from {base}")

        # 1. cold resolve, interleaved
        ours, theirs = [], []
        for i in range(args.reps):
            cache = os.path.join(work, f"ours{i}")
            ours.append(timed(lambda c=cache: beam_hub.resolve(url, cache_dir=c)))
            os.environ["TFHUB_CACHE_DIR"] = os.path.join(work, f"hub{i}")
            theirs.append(timed(lambda: hub.resolve(url)))
        o, t = statistics.median(ours), statistics.median(theirs)
        print(
            f"cold resolve   beam_hub {o:.3f}s ({size / 2**20 / o:.0f} MB/s)   tensorflow_hub {t:.3f}s "
            f"({size / 2**20 / t:.0f} MB/s)   ratio {o / t:.2f}"
        )

        # 2. warm resolve (cache hit)
        n = 2000
        cache = os.path.join(work, "ours0")
        os.environ["TFHUB_CACHE_DIR"] = os.path.join(work, "hub0")
        o = timed(lambda: [beam_hub.resolve(url, cache_dir=cache) for _ in range(n)]) / n
        t = timed(lambda: [hub.resolve(url) for _ in range(n)]) / n
        print(
            f"warm resolve   beam_hub {o * 1e6:.0f} us   tensorflow_hub {t * 1e6:.0f} us   ratio {o / t:.2f}"
            "   (beam_hub also stats every file against its manifest)"
        )

        # 3. apply overhead vs the raw signature call
        module = beam_hub.load(url, cache_dir=cache)
        raw = tf.saved_model.load(module.path).signatures["default"]
        batch = np.random.default_rng(1).standard_normal((256, 256), np.float32)
        for _ in range(5):
            module(batch), raw(x=tf.constant(batch))["default"].numpy()
        o_times, r_times = [], []
        for _ in range(7):
            o_times.append(timed(lambda: [module(batch) for _ in range(40)]))
            r_times.append(timed(lambda: [raw(x=tf.constant(batch))["default"].numpy() for _ in range(40)]))
        o, r = statistics.median(o_times) / 40, statistics.median(r_times) / 40
        print(
            f"apply (256x256 -> 3xDense1024)   HubModule {o * 1e3:.2f} ms/batch   raw signature "
            f"{r * 1e3:.2f} ms/batch   ratio {o / r:.3f}"
        )

        # 4. start-up on a cache hit
        env = {**os.environ, "TFHUB_CACHE_DIR": cache}
        cli = [os.path.join(os.path.dirname(sys.executable), "beam-hub"), "resolve", url]
        if not os.path.exists(cli[0]):
            cli = [sys.executable, "-m", "beam_hub", "resolve", url]
        hub_cmd = [sys.executable, "-c", f"import tensorflow_hub as hub; print(hub.resolve({url!r}))"]
        o = statistics.median(
            timed(lambda: subprocess.run(cli, env=env, check=True, capture_output=True)) for _ in range(3)
        )
        env["TFHUB_CACHE_DIR"] = os.path.join(work, "hub0")
        t = statistics.median(
            timed(lambda: subprocess.run(hub_cmd, env=env, check=True, capture_output=True)) for _ in range(3)
        )
        print(
            f"start-up       `beam-hub resolve` {o:.2f}s   tensorflow_hub resolve {t:.2f}s   ratio {o / t:.2f}"
        )
        httpd.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
