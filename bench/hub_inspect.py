"""What a hub pays to show a module's signatures: read from saved_model.pb vs loaded with TensorFlow.

Measures, in one run:
  per module  beam_hub.signature_defs.read_signatures (+ the audit, as a version page does) against
              tf.saved_model.load and reading the signatures off the loaded object (what the server
              did before, and what `beam-hub inspect --load` does), for the built-in MiniLM and a
              small tf.Module; medians of --rounds, each in a fresh state
  memory      `beam-hub serve` over --modules distinct modules, every version page and API answer
              fetched: the server's RSS, against a process that loads each module with TensorFlow
              and keeps its signatures (the old server's way)
  archive     a published version of --archive-mb MB: the page's inspection reading only the
              graph files out of the archive, against extracting it into a cache first (the
              server's way before); time and bytes written to disk, medians of --rounds

    python bench/hub_inspect.py [--rounds 5] [--modules 50] [--archive-mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

_LOAD_ALL = """
import sys, tensorflow as tf
kept = {}
for path in sys.argv[1:]:
    obj = tf.saved_model.load(path)
    kept[path] = {k: (f.structured_input_signature, f.structured_outputs) for k, f in obj.signatures.items()}
    del obj
with open("/proc/self/status") as f:
    print(next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:")))
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:"))


def per_module(paths: dict[str, str], rounds: int) -> None:
    import tensorflow as tf

    from beam_hub.safety.scan import scan_saved_model
    from beam_hub.signature_defs import read_signatures

    def loaded(path: str) -> None:
        obj = tf.saved_model.load(path)
        {k: f.structured_outputs for k, f in obj.signatures.items()}

    def median(fn, path: str) -> float:
        return statistics.median(timed(lambda: fn(path)) for _ in range(rounds))

    print(f"per module, medians of {rounds}")
    for label, path in paths.items():
        read = median(read_signatures, path)
        page = median(lambda p: (read_signatures(p), scan_saved_model(p)), path)
        load = median(loaded, path)
        print(
            f"  {label:28s} read {read * 1000:7.1f} ms   read + audit {page * 1000:7.1f} ms   "
            f"tf.saved_model.load {load * 1000:8.1f} ms   load / read {load / read:7.0f}x"
        )


def memory(work: str, n: int) -> None:
    import modules

    base = modules.make_fruit(os.path.join(work, "fruit"))
    root = os.path.join(work, "hub")
    paths = []
    for i in range(n):
        module = os.path.join(root, "acme", f"m{i}", "1")
        shutil.copytree(base, module)
        os.makedirs(os.path.join(module, "assets"), exist_ok=True)
        with open(os.path.join(module, "assets", "id.txt"), "w") as f:
            f.write(f"module {i}\n")
        paths.append(module)
    from helpers import Served, get

    env = {"XDG_CACHE_HOME": os.path.join(work, "xdg"), "TFHUB_CACHE_DIR": os.path.join(work, "c")}
    served = Served(root, pack_dir=os.path.join(work, "p"), env=env)
    try:
        start_rss = rss_mb(served.proc.pid)
        started = time.perf_counter()
        for i in range(n):
            assert get(f"{served.url}/acme/m{i}/1")[0] == 200
            assert json.loads(get(f"{served.url}/api/modules/acme/m{i}/1")[2])["signatures"]
        pages = time.perf_counter() - started
        served_rss = rss_mb(served.proc.pid)
    finally:
        served.stop()
    started = time.perf_counter()
    loading = int(
        subprocess.run(
            [sys.executable, "-c", _LOAD_ALL, *paths], capture_output=True, text=True, check=True
        ).stdout
    )
    load_time = time.perf_counter() - started
    print(f"\nmemory, {n} distinct modules, every version page and API answer")
    print(
        f"  beam-hub serve (reads)       RSS {start_rss} MB at start, {served_rss} MB after all ({pages:.1f} s)"
    )
    print(f"  load each with TensorFlow    RSS {loading} MB after all ({load_time:.1f} s)")
    print(f"  RSS, loading / reading: {loading / served_rss:.1f}x")


def archive_page(work: str, mb: int, rounds: int) -> None:
    import modules
    from beam_hub.archive import pack
    from beam_hub.resolvers import resolve
    from beam_hub.serve.inspection import inspect_module
    from beam_hub.serve.store import Module, ModuleStore

    root = os.path.join(work, "published")
    os.makedirs(os.path.join(root, "acme", "big"))
    pack(
        modules.make_weights(os.path.join(work, "weights"), mb), os.path.join(root, "acme", "big", "1.tar.gz")
    )
    store = ModuleStore(root, os.path.join(work, "packs"))
    module = store.find("acme/big/1")
    archive = store.archive(module)

    def extracted() -> None:  # the server's way before: into a cache, then read
        cache = tempfile.mkdtemp(dir=work)
        try:
            path = resolve(archive.file, cache_dir=cache)
            inspect_module(Module(module.path, path, None), archive)
        finally:
            shutil.rmtree(cache)

    read = statistics.median(timed(lambda: inspect_module(module, archive)) for _ in range(rounds))
    old = statistics.median(timed(extracted) for _ in range(rounds))
    print(
        f"\npublished archive of {archive.size / 1e6:.0f} MB, one version page's inspection, medians of {rounds}"
    )
    print(f"  graph files read out of the archive   {read:6.2f} s, nothing kept on disk")
    print(f"  extracted into a cache, then read     {old:6.2f} s, {mb} MB written to the cache")
    print(f"  extract / read: {old / read:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modules", type=int, default=50)
    ap.add_argument("--archive-mb", type=int, default=200)
    args = ap.parse_args()

    import beam_hub
    import modules

    work = tempfile.mkdtemp(prefix="bench-hub-inspect-")
    try:
        minilm = beam_hub.resolve("builtin://all-MiniLM-L6-v2", cache_dir=os.path.join(work, "cache"))
        fruit = modules.make_fruit(os.path.join(work, "one"))
        per_module({"builtin://all-MiniLM-L6-v2": minilm, "tf.Module (fruit)": fruit}, args.rounds)
        memory(work, args.modules)
        archive_page(work, args.archive_mb, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
