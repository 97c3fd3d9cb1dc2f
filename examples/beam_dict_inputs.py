"""Dict inputs and every output (``as_dict``) in a Beam pipeline, keys carried through.

    python examples/beam_dict_inputs.py [WORK_DIR] [Beam pipeline options, e.g. --runner FnApiRunner]

Builds the key-concepts module of TF Hub (a signature ``fruit_to_pet(apples, oranges) -> {cats,
dogs}``) with ``tf.saved_model.save``, then applies it to keyed records in a pipeline with
``ApplyHubModule(..., signature="fruit_to_pet", as_dict=True, keyed=True)``. A record the module
cannot take goes to the ``failed`` output instead of stopping the job.
"""

from __future__ import annotations

import os
import sys
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

import beam_hub


def build_fruit_module(path: str) -> str:
    import tensorflow as tf

    class Fruit(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="apples"),
                tf.TensorSpec([None], tf.float32, name="oranges"),
            ]
        )
        def fruit_to_pet(self, apples, oranges):
            return {"cats": 2.0 * apples + oranges, "dogs": apples - oranges}

    module = Fruit()
    tf.saved_model.save(module, path, signatures={"fruit_to_pet": module.fruit_to_pet})
    return path


def main(work: str, beam_args: list[str]) -> None:
    handle = build_fruit_module(os.path.join(work, "fruit"))
    records = [
        ("basket-1", {"apples": np.float32(3), "oranges": np.float32(1)}),
        ("basket-2", {"apples": np.float32(0), "oranges": np.float32(2)}),
        ("basket-3", {"apples": np.float32(1)}),  # no oranges: a dead letter, not a failed job
    ]
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        pets, failed = (
            p
            | beam.Create(records)
            | beam_hub.ApplyHubModule(
                handle, signature="fruit_to_pet", as_dict=True, keyed=True
            ).with_exception_handling()
        )
        _ = pets | "Pets" >> beam.MapTuple(
            lambda key, out: print(f"{key}: cats={float(out['cats']):g} dogs={float(out['dogs']):g}")
        )
        _ = failed | "Failed" >> beam.Map(lambda f: print(f"failed: {f.element[0]}: {f.error_type}"))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        main(args.pop(0), args)
    else:  # a temporary directory, removed on every exit
        with tempfile.TemporaryDirectory(prefix="beam-hub-example-") as work:
            main(work, args)
