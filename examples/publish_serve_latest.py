"""Fine-tune a module, publish it as a version, serve the versions, load ``@latest`` over HTTP.

    python examples/publish_serve_latest.py [WORK_DIR] [Beam pipeline options]

1. builds a small reusable base module (``__call__(x, training)``, trainable variables);
2. fine-tunes it on 600 generated records in a pipeline (``FineTuneHubModule``) and publishes the
   result as the next version under WORK_DIR/hub/acme/quadrants (``ExportHubModule``), twice, so
   there are versions 1 and 2;
3. points the alias ``champion`` at version 1;
4. starts ``beam-hub serve`` on WORK_DIR/hub (127.0.0.1, a free port) and loads
   ``http://127.0.0.1:PORT/acme/quadrants@latest`` and ``...@champion`` as any client would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

import beam_hub


def build_base(path: str) -> str:
    import tensorflow as tf

    class Base(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((2, 8)).astype(np.float32), name="w")
            self.b = tf.Variable(np.zeros(8, np.float32), name="b")

        @tf.function(
            input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"), tf.TensorSpec([], tf.bool)]
        )
        def __call__(self, x, training=False):
            return tf.nn.relu(tf.matmul(x, self.w) + self.b)

    tf.saved_model.save(Base(), path)
    return path


def records(n: int, seed: int) -> list[dict]:
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 2)).astype(np.float32)
    return [{"x": row.tolist(), "label": int(row[0] * row[1] > 0)} for row in x]


def main(work: str, beam_args: list[str]) -> None:
    base = build_base(os.path.join(work, "base"))
    dest = os.path.join(work, "hub", "acme", "quadrants")
    for seed in (1, 2):  # two nightly runs: versions 1 and 2
        with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
            _ = (
                p
                | f"Records{seed}" >> beam.Create(records(600, seed))
                | beam_hub.FineTuneHubModule(
                    base,
                    input_key="x",
                    label_key="label",
                    num_classes=2,
                    epochs=3,
                    learning_rate=0.02,
                    seed=seed,
                )
                | beam_hub.ExportHubModule(dest)
            )
    print("published:", sorted(os.listdir(dest)))
    beam_hub.set_alias(dest, "champion", 1)

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beam_hub",
            "serve",
            os.path.join(work, "hub"),
            "--port",
            "0",
            "--pack-dir",
            os.path.join(work, "packs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its request log
        text=True,
    )
    try:
        first = server.stdout.readline()  # "Serving ROOT at URL", or nothing if it could not start
        if " at " not in first:
            raise SystemExit(f"beam-hub serve did not start (it said {first!r})")
        url = first.split(" at ")[1].strip().rstrip("/")
        for name in ("latest", "champion"):
            handle = f"{url}/acme/quadrants@{name}"
            module = beam_hub.load(handle, cache_dir=os.path.join(work, "cache"))
            probabilities = module(np.array([[0.5, 0.5], [0.5, -0.5]], np.float32))
            shown = ", ".join(f"{p:.2f}" for p in probabilities[:, 1])
            print(f"{handle} is {beam_hub.resolve_version(handle)}: P(same sign) = {shown}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        main(args.pop(0), args)
    else:  # a temporary directory, removed on every exit
        with tempfile.TemporaryDirectory(prefix="beam-hub-example-") as work:
            main(work, args)
