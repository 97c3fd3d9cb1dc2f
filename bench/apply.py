"""ApplyHubModule against the raw signature call and Beam's stock RunInference, in one run.

For a compute-heavy module (3 x Dense 1024 over 256 floats) and a tiny one (one Dense 64 over 256
floats), measures interleaved:
  raw      the module's signature called directly on numpy batches of 256 (the limit)
  apply    `ApplyHubModule(path)` in a pipeline on the in-process runner (batches of 256)
  apply-adaptive  the same with ApplyHubModule's default (adaptive) batch sizes
  handler  `RunInference(HubModelHandler(path))`, beam-hub's handler in Beam's own transform
  stock    `RunInference(TFModelHandlerNumpy(path))`, Beam's stock TensorFlow handler
The pipeline reads its elements from a generator (beam.Create of chunk ids, then FlatMap), never
from a pickled list. Each path's steady-state time excludes pipeline start-up (graph, runner,
module load), measured separately with a one-chunk pipeline and reported on its own line.
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

import numpy as np  # noqa: E402

DIM = 256
CHUNK = 1024
BATCH = 256


def build(path: str, layers: list[int]) -> str:
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            sizes = [DIM] + layers
            self.ws = [tf.Variable(rng.standard_normal((a, b), np.float32) / np.float32(np.sqrt(a))) for a, b in zip(sizes, sizes[1:])]

        @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="x")])
        def __call__(self, x):
            for w in self.ws:
                x = tf.nn.relu(tf.matmul(x, w))
            return x

        @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="x")])
        def serve(self, x):
            return {"default": self(x)}

    m = Dense()
    tf.saved_model.save(m, path, signatures={"default": m.serve, "serving_default": m.serve})
    return path


_BASE: list[np.ndarray] = []


def chunk(i: int) -> np.ndarray:
    """Chunk ``i`` of the input: cheap to make (one vectorised add), different for every i."""
    if not _BASE:
        _BASE.append(np.random.default_rng(0).standard_normal((CHUNK, DIM), dtype=np.float32))
    return _BASE[0] + np.float32(i % 97) * np.float32(1e-3)


def rows(i: int) -> list[np.ndarray]:
    return list(chunk(i))


def run_raw(path: str, n_chunks: int) -> float:
    import tensorflow as tf

    sig = tf.saved_model.load(path).signatures["default"]
    sig(x=tf.constant(chunk(0)[:BATCH]))  # trace/warm
    start = time.perf_counter()
    for i in range(n_chunks):
        data = chunk(i)
        for j in range(0, CHUNK, BATCH):
            sig(x=tf.constant(data[j:j + BATCH]))["default"].numpy()
    return time.perf_counter() - start


def run_pipeline(kind: str, path: str, n_chunks: int) -> float:
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

        transform = RunInference(TFModelHandlerNumpy(path, model_type=ModelType.SAVED_MODEL,
                                                     min_batch_size=BATCH, max_batch_size=BATCH))
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = p | beam.Create(list(range(n_chunks))) | beam.FlatMap(rows) | transform
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=100_000, help="elements for the heavy module")
    ap.add_argument("--tiny-elements", type=int, default=200_000, help="elements for the tiny module")
    ap.add_argument("--stock-max-elements", type=int, default=30_000,
                    help="cap for the (slow) stock handler; its rate is measured on fewer elements")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--paths", default="raw,apply,apply-adaptive,handler,stock")
    args = ap.parse_args()
    paths = args.paths.split(",")

    work = tempfile.mkdtemp(prefix="bench-apply-")
    try:
        models = {"heavy (3 x Dense 1024)": (build(os.path.join(work, "heavy"), [1024, 1024, 1024]), args.elements),
                  "tiny (Dense 64)": (build(os.path.join(work, "tiny"), [64]), args.tiny_elements)}
        for name, (path, n) in models.items():
            n_chunks = max(1, n // CHUNK)
            stock_chunks = max(1, min(n, args.stock_max_elements) // CHUNK)
            startup = {k: statistics.median(run_pipeline(k, path, 1) for _ in range(2)) for k in paths if k != "raw"}
            times: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.reps):
                for k in paths:
                    chunks = stock_chunks if k == "stock" else n_chunks
                    t = run_raw(path, chunks) if k == "raw" else run_pipeline(k, path, chunks) - startup[k]
                    times[k].append(t / (chunks * CHUNK))
            per = {k: statistics.median(v) for k, v in times.items()}
            print(f"\n{name}: {n_chunks * CHUNK} elements ({stock_chunks * CHUNK} for stock), batch {BATCH}, "
                  f"{args.reps} interleaved reps")
            for k in paths:
                ratio = per[k] / per["raw"] if "raw" in per else float("nan")
                extra = f"   start-up {startup[k]:.2f}s" if k in startup else ""
                print(f"  {k:15s} {1 / per[k]:>10,.0f} el/s   ratio {ratio:6.2f}{extra}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
