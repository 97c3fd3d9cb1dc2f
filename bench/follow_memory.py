"""Memory while following a moving module: RSS after 10 swaps against RSS after the first version.

A 50 MB module (``--mb``) is published as version 1 under a temp destination; then, ``--swaps``
times, a new version is published and taken up. Two ways, each in its own process:

  follow   beam_hub's Follower (what ``ApplyHubModule(follow=True)`` runs in each worker): poll,
           load and check the new version, swap, drop the old one
  machine  the same follower in the machine's model process (``large_model=True``), reached
           through Beam's multi_process_shared proxy (its server runs in the first process)
  shared   Beam's ``Shared`` with the version as its tag, the module kept by the caller as
           RunInference's DoFn keeps its model (``update_model_path`` then a re-acquire)

Printed per way: resident memory (RSS) after version 1 has computed a batch, after the last
swap, and their ratio (target for follow: within 1.5x); and the ratio of the two ways.

    python bench/follow_memory.py [--mb 50] [--swaps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the tests' module builders
X = [np.float32(i) for i in range(8)]  # a batch of 8 scalar elements


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_way(way: str, module: str, dest: str, swaps: int) -> dict[str, float]:
    """In this process: take up ``swaps`` new versions the given way; RSS after 1 and after all."""
    import beam_hub
    from beam_hub.batch import ApplySpec
    from beam_hub.beam.shared_model import ModuleKey
    from beam_hub.beam.versions import follower_of
    from beam_hub.follow import Follower
    from beam_hub.resolvers import resolve_version

    spec = ApplySpec()
    beam_hub.publish(module, dest)

    def load(concrete: str):
        return ModuleKey(concrete).load()

    if way in ("follow", "machine"):

        def make() -> Follower:
            return follower_of(
                f"{dest}@latest", load, spec, lambda m, batch: m.apply_batch(batch, spec), poll_seconds=3600
            )

        if way == "follow":
            follower = make()
        else:
            from beam_hub.beam.shared_model import acquire_follower

            follower = acquire_follower(ModuleKey(f"{dest}@latest"), 3600, "bench", make, per_machine=True)

        def step() -> None:
            follower.compute(X)

        def take_up() -> None:
            assert follower.poll(), "the new version was not adopted"
    else:
        from apache_beam.utils import shared

        handle = shared.Shared()
        state: dict[str, object] = {}

        def take_up() -> None:
            concrete = resolve_version(f"{dest}@latest")
            state["model"] = handle.acquire(lambda: load(concrete), tag=concrete)

        take_up()

        def step() -> None:
            state["model"].apply_batch(X, spec)

    step()
    first = rss_mb()
    for _ in range(swaps):
        beam_hub.publish(module, dest)
        take_up()
        step()
    return {"first_mb": first, "last_mb": rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument(
        "--way", choices=["follow", "machine", "shared"], help=argparse.SUPPRESS
    )  # the child's part
    ap.add_argument("--module", help=argparse.SUPPRESS)
    ap.add_argument("--dest", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, args.module, args.dest, args.swaps)))
        return
    import modules

    work = tempfile.mkdtemp(prefix="bench-follow-")
    try:
        module = os.path.join(work, "module")
        modules.make_weights(module, args.mb)
        results = {}
        for way in ("follow", "machine", "shared"):
            env = {
                **os.environ,
                "TFHUB_CACHE_DIR": os.path.join(work, f"cache-{way}"),
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            cmd = [
                sys.executable,
                os.path.join(HERE, "follow_memory.py"),
                "--way",
                way,
                "--swaps",
                str(args.swaps),
            ]
            cmd += ["--module", module, "--dest", os.path.join(work, f"dest-{way}")]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
            results[way] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[way]
            print(
                f"{way:7} {args.mb} MB module: RSS after version 1 {r['first_mb']:7.0f} MB, after {args.swaps} swaps "
                f"{r['last_mb']:7.0f} MB: {r['last_mb'] / r['first_mb']:.2f}x"
                + (" (target <= 1.5x)" if way != "shared" else ""),
                flush=True,
            )
        ratio = results["follow"]["last_mb"] / results["shared"]["last_mb"]
        print(f"RSS after {args.swaps} swaps, follow / Beam Shared re-acquired by tag: {ratio:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
