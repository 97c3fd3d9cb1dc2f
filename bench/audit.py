"""The audit: its cost on the built-in MiniLM, and what it finds next to `saved_model_cli scan`.

Measures, in one run:
  cost        beam_hub's scan of builtin://all-MiniLM-L6-v2 (parse + walk), the same report read
              back from the entry's manifest (what every later load pays), saved_model_cli's scan
              (parse + its deny list over the graph and function library), and tf.saved_model.load
              of the same module (what the audit stands in front of); medians of --rounds
  findings    the tests' crafted modules (tests/risky_modules.py): what each tool reports

    python bench/audit.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def saved_model_cli_findings(path: str) -> set[str]:
    """What `saved_model_cli scan` reports: its deny list (WriteFile, ReadFile, PrintV2) over the
    ops of each meta graph's graph and function library."""
    from tensorflow.python.framework import meta_graph
    from tensorflow.python.tools import saved_model_cli

    from beam_hub.protos import read_saved_model

    found: set[str] = set()
    for mg in read_saved_model(path).meta_graphs:
        found |= saved_model_cli._OP_DENYLIST & set(meta_graph.ops_used_by_graph_def(mg.graph_def))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import tensorflow as tf

    import beam_hub
    from beam_hub.safety import policy
    from beam_hub.safety.scan import scan_saved_model

    work = tempfile.mkdtemp(prefix="bench-audit-")
    try:
        cache = os.path.join(work, "cache")
        path = beam_hub.resolve("builtin://all-MiniLM-L6-v2", cache_dir=cache)
        beam_hub.audit(path)  # stores the report in the entry's manifest

        def from_manifest():
            policy._memo.clear()
            policy.audit_path(path)

        rows = {
            "beam_hub scan (parse + walk)": lambda: scan_saved_model(path),
            "beam_hub, report from the manifest": from_manifest,
            "saved_model_cli scan (parse + deny list)": lambda: saved_model_cli_findings(path),
            "tf.saved_model.load": lambda: tf.saved_model.load(path),
        }
        times = {label: [] for label in rows}
        for _ in range(args.rounds):
            for label, fn in rows.items():
                times[label].append(timed(fn))
        load = statistics.median(times["tf.saved_model.load"])
        size = os.path.getsize(os.path.join(path, "saved_model.pb"))
        report = scan_saved_model(path)
        print(
            f"builtin://all-MiniLM-L6-v2: saved_model.pb {size / 1e6:.1f} MB, {report.functions} functions, "
            f"{report.nodes} nodes; medians of {args.rounds}"
        )
        for label, ts in times.items():
            t = statistics.median(ts)
            print(f"  {label:42s} {t * 1000:8.1f} ms  {t / load:6.2f}x the load")

        import risky_modules as risky

        target = os.path.join(work, "never-written")
        crafted = {
            "WriteFile in a signature": risky.make_writer(os.path.join(work, "w"), target),
            "WriteFile one function deeper": risky.make_deep_writer(os.path.join(work, "d"), target),
            "ReadFile in a tf.data map": risky.make_dataset_reader(os.path.join(work, "r")),
            "WriteFile in a DatasetFromGraph graph": risky.make_graph_in_a_dataset(
                os.path.join(work, "g"), target
            ),
            "tf.py_function": risky.make_py_function(os.path.join(work, "p")),
            "TF1 Hub module with ReadFile": risky.make_tf1_reader(os.path.join(work, "t")),
            "vocabulary from its own asset (clean)": risky.make_vocab_lookup(
                os.path.join(work, "v"), os.path.join(work, "vw")
            ),
        }
        print(f"\n  {'module':40s} {'beam_hub audit':28s} saved_model_cli scan")
        for label, module in crafted.items():
            ours = ", ".join(sorted({f.op for f in scan_saved_model(module).findings})) or "clean"
            theirs = ", ".join(sorted(saved_model_cli_findings(module))) or "clean"
            print(f"  {label:40s} {ours:28s} {theirs}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
