"""Archives as the tools people use pack them: cold resolve, beam-hub against tensorflow_hub.

One module (``--mb`` MB of incompressible weights, a vocabulary asset, several signatures) is
packed by GNU tar with TF Hub's hosting guide command and by the other common forms (bsdtar, xz,
bzip2, plain tar, a folder at the top, sparse-capable `tar -S`), served over loopback HTTP with the
TF Hub protocol, and resolved into empty caches by beam_hub and by tensorflow_hub, interleaved (download, checks and
extraction; beam-hub also hashes every file into the entry's manifest). Prints each form's seconds,
MB/s of archive and the ratio (ours / tensorflow_hub; < 1 means we are faster); "fails" where
tensorflow_hub cannot load what it extracted.

    python bench/archives.py [--mb 64] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _workload import build_weights, serve_dir, timed
from packers import FORMS, have  # the same archive forms the interop tests check

SHOWN = [
    "gnu-guide",
    "gnu-posix",
    "bsdtar",
    "gnu-xz",
    "gnu-bzip2",
    "gnu-plain",
    "gnu-sparse",
    "gnu-one-folder",
]


def build_module(path: str, mb: int) -> None:
    """``mb`` MB of incompressible weights, plus a vocabulary asset (20,000 lines)."""
    build_weights(path, mb)
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "vocab.txt"), "w") as f:
        f.write("\n".join(f"word{i}" for i in range(20_000)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="module size in MB")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import tensorflow_hub as hub

    import beam_hub

    work = tempfile.mkdtemp(prefix="bench-archives-")
    try:
        src = os.path.join(work, "module")
        build_module(src, args.mb)
        www = os.path.join(work, "www")
        os.makedirs(www)
        shown = [name for name in SHOWN if have(FORMS[name].tool)]
        for name in sorted(set(SHOWN) - set(shown)):
            print(f"{name}: skipped, {FORMS[name].tool} is not installed")
        for name in shown:
            FORMS[name].pack(src, os.path.join(www, name))  # served without a suffix: the protocol decides
        httpd, base = serve_dir(www)
        beam_hub.resolve(f"{base}/{shown[0]}", cache_dir=os.path.join(work, "warm-up"))  # first-call costs
        os.environ["TFHUB_CACHE_DIR"] = os.path.join(work, "hub-warm-up")
        hub.resolve(f"{base}/{shown[0]}")
        print(f"module: {args.mb} MB of weights; {args.reps} cold resolves each, interleaved, over {base}")
        print(
            f"{'form':16} {'size MB':>8} {'beam_hub s':>11} {'MB/s':>6} {'tensorflow_hub s':>17} {'MB/s':>6} {'ratio':>6}"
        )
        for name in shown:
            url = f"{base}/{name}"
            size = os.path.getsize(os.path.join(www, name)) / 2**20
            ours, theirs = [], []
            for i in range(args.reps):
                ours.append(timed(beam_hub.resolve, url, cache_dir=os.path.join(work, f"ours-{name}-{i}")))
                os.environ["TFHUB_CACHE_DIR"] = os.path.join(work, f"hub-{name}-{i}")
                try:
                    theirs.append(timed(hub.resolve, url))
                except Exception as e:  # noqa: BLE001 - reported, not raised
                    theirs.append(e)
            o = statistics.median(ours)
            beam_hub.load(url, cache_dir=os.path.join(work, f"ours-{name}-0"))  # and it loads
            try:
                hub.load(url)  # from its cache: a form it extracts but cannot load fails here
                failed = next((type(t).__name__ for t in theirs if isinstance(t, Exception)), None)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                failed = type(e).__name__
            if failed:
                print(f"{name:16} {size:8.1f} {o:11.3f} {size / o:6.0f} {'fails (' + failed + ')':>17}")
                continue
            t = statistics.median(theirs)
            print(f"{name:16} {size:8.1f} {o:11.3f} {size / o:6.0f} {t:17.3f} {size / t:6.0f} {o / t:6.2f}")
        httpd.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
