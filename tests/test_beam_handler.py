import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, ModelMetadata, PredictionResult, RunInference
from apache_beam.testing.util import assert_that, equal_to

import beam_hub
from helpers import REPO, run_pipeline

ROWS = [np.array([i, 0, 1], np.float32) for i in range(12)]


def value(row, scale=1.0):
    return float(row @ np.array([1.0, 2.0, 3.0])) * scale


KERAS_3_JOB = """
import sys
import apache_beam as beam
import keras
import numpy as np
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
import beam_hub

assert keras.__version__.startswith("3."), keras.__version__
with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
    _ = (p | beam.Create([np.array([1.0, 2.0, 3.0], np.float32)])
           | RunInference(beam_hub.HubModelHandler(sys.argv[1]))
           | beam.Map(lambda r: print("inference", r.inference.tolist(), flush=True)))
"""


def test_runs_a_keras_export_under_keras_3_without_legacy_keras(modules_dir):
    """Beam's stock TF handler needs TF_USE_LEGACY_KERAS=1 (and tf_keras) to load a SavedModel under Keras 3."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run(
        [sys.executable, "-c", KERAS_3_JOB, modules_dir["keras"]],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "inference [6.0, 6.0]" in proc.stdout


def test_run_inference_gives_prediction_results(one_input):
    handler = beam_hub.HubModelHandler(one_input, max_batch_size=5)
    assert isinstance(handler, beam.ml.inference.base.ModelHandler)

    def build(p):
        out = (
            p
            | beam.Create(ROWS)
            | RunInference(handler)
            | beam.Map(
                lambda r: (
                    isinstance(r, PredictionResult),
                    r.example.tolist(),
                    r.inference.tolist(),
                    r.model_id,
                )
            )
        )
        assert_that(out, equal_to([(True, r.tolist(), [value(r)], one_input) for r in ROWS]))

    run_pipeline(build)


def test_keyed_model_handler(fruit):
    elements = [(i, {"apples": r, "oranges": r}) for i, r in enumerate(ROWS)]
    handler = KeyedModelHandler(beam_hub.HubModelHandler(fruit, signature="fruit_to_pet", as_dict=True))

    def build(p):
        out = (
            p
            | beam.Create(elements)
            | RunInference(handler)
            | beam.MapTuple(lambda k, r: (k, r.inference["dogs"].tolist()))
        )
        assert_that(out, equal_to([(i, [float(r.sum() * 5)]) for i, r in enumerate(ROWS)]))

    run_pipeline(build)


def test_with_exception_handling(one_input):
    bad = np.ones(7, np.float32)

    def build(p):
        main, other = (
            p
            | beam.Create(ROWS[:4] + [bad])
            | RunInference(
                beam_hub.HubModelHandler(one_input, min_batch_size=5, max_batch_size=5)
            ).with_exception_handling()
        )
        # Beam's own semantics: the whole failing batch goes to failed_inferences, with the error
        shapes = "different shapes ((3,) x 4, (7,) x 1)"
        assert_that(
            other.failed_inferences | beam.Map(lambda f: (len(f[0]), shapes in str(f[1]))),
            equal_to([(5, True)]),
            label="failed",
        )
        assert_that(main, equal_to([]), label="main")

    run_pipeline(build)


def test_model_update_through_side_input(modules_dir):
    """RunInference's model_metadata_pcoll calls update_model_path: the new module is used."""

    def build(p):
        meta = p | "meta" >> beam.Create(
            [ModelMetadata(model_id=modules_dir["one_input_x2"], model_name="x2")]
        )
        out = (
            p
            | beam.Create(ROWS)
            | RunInference(beam_hub.HubModelHandler(modules_dir["one_input"]), model_metadata_pcoll=meta)
            | beam.Map(lambda r: (r.inference.tolist(), r.model_id))
        )
        assert_that(out, equal_to([([value(r, 2.0)], modules_dir["one_input_x2"]) for r in ROWS]))

    run_pipeline(build)


def test_update_model_path_and_inference_args(one_input, modules_dir):
    handler = beam_hub.HubModelHandler(one_input)
    handler.update_model_path(modules_dir["one_input_x2"])
    assert handler.handle == modules_dir["one_input_x2"]
    model = handler.load_model()
    (result,) = handler.run_inference([ROWS[3]], model)
    assert result.inference.tolist() == [value(ROWS[3], 2.0)]
    with pytest.raises(ValueError, match="takes no inference_args"):
        handler.validate_inference_args({"x": 1})
    assert handler.get_num_bytes([ROWS[0], ROWS[1]]) == 24
    assert handler.get_metrics_namespace() == "beam_hub"
