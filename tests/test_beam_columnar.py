"""ApplyHubModule's columnar mode: whole Arrow or numpy batches in, the same batches with outputs out."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

import beam_hub
from helpers import counters, run_pipeline
from modules import text_features

TEXTS = ["a much longer sentence than the others", "", "mid length", "x", "héllo wörld", "日本語"]


def test_arrow_record_batches_keep_row_order_through_length_sorted_sub_batches(modules_dir):
    batch = pa.RecordBatch.from_pydict({"id": list(range(len(TEXTS))), "text": TEXTS})

    def build(p):
        out = (
            p
            | beam.Create([batch])
            | beam_hub.ApplyHubModule(
                modules_dir["text_embedder"], columns="text", output_column="emb", max_batch_size=4
            )
        )
        rows = out | beam.FlatMap(lambda b: [(r["id"], r["text"], r["emb"]) for r in b.to_pylist()])
        assert_that(rows, equal_to([(i, t, text_features(t)) for i, t in enumerate(TEXTS)]), label="rows")
        schema = out | beam.Map(lambda b: (b.schema.names, str(b.schema.field("emb").type)))
        assert_that(schema, equal_to([(["id", "text", "emb"], "list<item: float>")]), label="schema")

    metrics = counters(run_pipeline(build))
    assert metrics["inference_elements"] == len(TEXTS)
    assert metrics["inference_batches"] == 2  # 6 rows in sub-batches of at most 4


def test_tables_and_empty_batches(modules_dir):
    table = pa.table({"text": TEXTS[:3]})
    empty = pa.table({"text": pa.array([], pa.string())})

    def build(p):
        out = (
            p
            | beam.Create([table, empty])
            | beam_hub.ApplyHubModule(modules_dir["text_embedder"], columns="text")
        )
        assert_that(
            out | beam.Map(lambda t: (t.num_rows, t.column("output").to_pylist())),
            equal_to([(3, [text_features(t) for t in TEXTS[:3]])]),
        )

    run_pipeline(build)


def test_numpy_columns_and_several_inputs_with_every_output(fruit, one_input):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)

    def build(p):
        single = (
            p
            | "one" >> beam.Create([{"features": x, "key": np.arange(4)}])
            | "linear" >> beam_hub.ApplyHubModule(one_input, columns="features")
        )
        assert_that(
            single | "s" >> beam.Map(lambda b: (b["key"].tolist(), b["output"].tolist())),
            equal_to([(list(range(4)), (x @ [[1.0], [2.0], [3.0]]).tolist())]),
            label="single",
        )
        pets = (
            p
            | "two" >> beam.Create([{"a": x, "o": x * 2}])
            | "fruit"
            >> beam_hub.ApplyHubModule(
                fruit,
                "fruit_to_pet",
                columns={"apples": "a", "oranges": "o"},
                as_dict=True,
                output_column="pet",
            )
        )
        assert_that(
            pets | "p" >> beam.Map(lambda b: (sorted(b), b["pet_cats"].tolist(), b["pet_dogs"].tolist())),
            equal_to(
                [
                    (
                        ["a", "o", "pet_cats", "pet_dogs"],
                        (x @ np.eye(3, 2)).tolist(),
                        (x * 2 @ np.full((3, 1), 5.0)).tolist(),
                    )
                ]
            ),
            label="pets",
        )

    run_pipeline(build)


def test_list_columns_become_2d_inputs(one_input):
    batch = pa.table({"v": [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]})

    def build(p):
        out = p | beam.Create([batch]) | beam_hub.ApplyHubModule(one_input, columns="v")
        assert_that(out | beam.Map(lambda t: t.column("output").to_pylist()), equal_to([[[14.0], [3.0]]]))

    run_pipeline(build)


def test_mistakes_are_refused_clearly(one_input, modules_dir):
    with pytest.raises(ValueError, match="cannot be combined with keyed"):
        beam_hub.ApplyHubModule(one_input, columns="v", keyed=True)

    def taken(p):
        _ = (
            p
            | beam.Create([pa.table({"text": ["a"], "output": [1]})])
            | beam_hub.ApplyHubModule(modules_dir["text_embedder"], columns="text")
        )

    with pytest.raises(Exception, match="output column 'output' already exists"):
        run_pipeline(taken)

    def missing(p):
        _ = (
            p
            | beam.Create([pa.table({"body": ["a"]})])
            | beam_hub.ApplyHubModule(modules_dir["text_embedder"], columns="text")
        )

    with pytest.raises(Exception, match=r"column 'text' is not in the batch \(columns: \['body'\]\)"):
        run_pipeline(missing)


def test_rows_the_module_fails_on_go_to_the_failed_output(modules_dir):
    texts = ["fine", "poison", "also fine", "poison", "last"]
    batch = pa.table({"id": list(range(len(texts))), "text": texts})

    def build(p):
        good, failed = (
            p
            | beam.Create([batch])
            | beam_hub.ApplyHubModule(modules_dir["picky_embedder"], columns="text").with_exception_handling()
        )
        assert_that(
            good | beam.FlatMap(lambda t: [(r["id"], r["output"]) for r in t.to_pylist()]),
            equal_to([(i, text_features(t)) for i, t in enumerate(texts) if t != "poison"]),
            label="good",
        )
        assert_that(
            failed | beam.Map(lambda f: (f.element, f.error_type, "cannot embed poison" in f.error)),
            equal_to(
                [
                    ({"id": 1, "text": "poison"}, "InvalidArgumentError", True),
                    ({"id": 3, "text": "poison"}, "InvalidArgumentError", True),
                ]
            ),
            label="failed",
        )

    metrics = counters(run_pipeline(build))
    assert metrics["inference_elements"] == 3
