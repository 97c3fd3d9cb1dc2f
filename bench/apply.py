"""ApplyHubModule against the raw signature call and Beam's stock RunInference, in one run.

For a compute-heavy module (3 x Dense 1024 over 256 floats) and a tiny one (one Dense 64 over 256
floats), measures interleaved:
  raw      the module's signature called directly on numpy batches of 256 (the limit)
  apply    `ApplyHubModule(path)` in a pipeline on the in-process runner (batches of 256)
  apply-adaptive  the same with ApplyHubModule's default (adaptive) batch sizes
  handler  `RunInference(HubModelHandler(path))`, beam-hub's handler in Beam's own transform
  stock    `RunInference(TFModelHandlerNumpy(path))`, Beam's stock TensorFlow handler
The pipeline reads its elements from a generator (beam.Create of chunk ids, then FlatMap), never
from a pickled list. Each pipeline's steady state comes from a clock in the generator (the time between its first and
last chunk), so start-up, module load and tear-down are excluded and reported apart.
Prints elements/s and the ratio to raw (lower is better).

    python bench/apply.py [--elements 100000] [--tiny-elements 200000] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Beam's stock TF handler needs tf_keras under Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _workload import CHUNK, TICKS, build, chunk, rows, steady_seconds_per_element

BATCH = 256


def run_raw(path: str, n_chunks: int) -> float:
    import tensorflow as tf

    sig = tf.saved_model.load(path).signatures["default"]
    sig(x=tf.constant(chunk(0)[:BATCH]))  # trace/warm
    start = time.perf_counter()
    for i in range(n_chunks):
        data = chunk(i)
        for j in range(0, CHUNK, BATCH):
            sig(x=tf.constant(data[j : j + BATCH]))["default"].numpy()
    return time.perf_counter() - start


def run_pipeline(kind: str, path: str, n_chunks: int) -> tuple[float, float]:
    """(wall seconds of the whole run, steady seconds per element from the in-pipeline clock)"""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    import beam_hub

    if kind == "apply":
        transform = beam_hub.ApplyHubModule(path, min_batch_size=BATCH, max_batch_size=BATCH)
    elif kind == "apply-adaptive":
        transform = beam_hub.ApplyHubModule(path)  # its defaults: BatchElements' adaptive sizing
    elif kind == "handler":
        transform = RunInference(beam_hub.HubModelHandler(path, min_batch_size=BATCH, max_batch_size=BATCH))
    else:
        from apache_beam.ml.inference.tensorflow_inference import ModelType, TFModelHandlerNumpy

        transform = RunInference(
            TFModelHandlerNumpy(
                path, model_type=ModelType.SAVED_MODEL, min_batch_size=BATCH, max_batch_size=BATCH
            )
        )
    TICKS.clear()
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = p | beam.Create(list(range(n_chunks))) | beam.FlatMap(rows) | transform
    return time.perf_counter() - start, steady_seconds_per_element()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=100_000, help="elements for the heavy module")
    ap.add_argument("--tiny-elements", type=int, default=200_000, help="elements for the tiny module")
    ap.add_argument(
        "--stock-max-elements",
        type=int,
        default=30_000,
        help="cap for the (slow) stock handler; its rate is measured on fewer elements",
    )
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--paths", default="raw,apply,apply-adaptive,handler,stock")
    args = ap.parse_args()
    paths = args.paths.split(",")

    work = tempfile.mkdtemp(prefix="bench-apply-")
    try:
        models = {
            "heavy (3 x Dense 1024)": (build(os.path.join(work, "heavy"), [1024, 1024, 1024]), args.elements),
            "tiny (Dense 64)": (build(os.path.join(work, "tiny"), [64]), args.tiny_elements),
        }
        for name, (path, n) in models.items():
            n_chunks = max(3, n // CHUNK)
            stock_chunks = max(3, min(n, args.stock_max_elements) // CHUNK)
            per: dict[str, list[float]] = {k: [] for k in paths}
            overhead: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.reps):
                for k in paths:
                    chunks = stock_chunks if k == "stock" else n_chunks
                    if k == "raw":
                        per[k].append(run_raw(path, chunks) / (chunks * CHUNK))
                        continue
                    wall, steady = run_pipeline(k, path, chunks)
                    per[k].append(steady)
                    overhead[k].append(wall - steady * chunks * CHUNK)
            med = {k: statistics.median(v) for k, v in per.items()}
            print(
                f"\n{name}: {n_chunks * CHUNK} elements ({stock_chunks * CHUNK} for stock), batch {BATCH}, "
                f"{args.reps} interleaved reps; steady state (start-up excluded, shown apart)"
            )
            for k in paths:
                ratio = med[k] / med["raw"] if "raw" in med else float("nan")
                extra = (
                    f"   start-up + tear-down {statistics.median(overhead[k]):.2f}s" if overhead[k] else ""
                )
                print(f"  {k:15s} {1 / med[k]:>10,.0f} el/s   ratio {ratio:6.2f}{extra}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
