import numpy as np
import pytest
import tensorflow as tf

import beam_hub
from beam_hub.batch import ApplySpec, LoadedModule, stack
from beam_hub.errors import InputError
from beam_hub.examples import parse_examples
from beam_hub.signatures import TensorInfo

X = TensorInfo("x", tf.float32, tf.TensorShape([None, 3]))


def test_stack_numbers_arrays_and_strings():
    assert stack([np.ones(3), np.zeros(3)], X, "s").shape == (2, 3)
    assert stack([1.0, 2.0], TensorInfo("v", tf.float32, tf.TensorShape([None])), "s").tolist() == [1.0, 2.0]
    texts = stack(["a", "bb" * 1000, b"raw"], TensorInfo("t", tf.string, tf.TensorShape([None])), "s")
    assert texts.dtype == object and texts.shape == (3,) and texts[2] == b"raw"


def test_stack_names_the_differing_shapes():
    with pytest.raises(InputError) as e:
        stack([np.ones(3)] * 5 + [np.ones(4)], X, "default")
    assert "different shapes ((3,) x 5, (4,) x 1)" in str(e.value) and "x: float32[?, 3]" in str(e.value)


def test_apply_batch_splits_rows_without_copying_per_row(one_input):
    loaded = LoadedModule(beam_hub.load(one_input))
    rows = [np.array([i, 0, 0], np.float32) for i in range(5)]
    out = loaded.apply_batch(rows, ApplySpec())
    assert [o.tolist() for o in out] == [[float(i)] for i in range(5)]
    assert all(o.base is out[0].base for o in out)  # views of one batch array


def test_parse_examples_casts_and_reports_missing_features(fruit):
    spec = beam_hub.load(fruit).signature("fruit_to_pet")
    ex = tf.train.Example(
        features=tf.train.Features(
            feature={
                "apples": tf.train.Feature(float_list=tf.train.FloatList(value=[1, 2, 3])),
                "oranges": tf.train.Feature(float_list=tf.train.FloatList(value=[4, 5, 6])),
            }
        )
    ).SerializeToString()
    parsed = parse_examples([ex, ex], spec)
    assert parsed["apples"].dtype == tf.float32 and parsed["oranges"].shape == (2, 3)
    missing = tf.train.Example(
        features=tf.train.Features(
            feature={
                "apples": tf.train.Feature(float_list=tf.train.FloatList(value=[1, 2, 3])),
            }
        )
    ).SerializeToString()
    with pytest.raises(InputError, match="oranges"):
        parse_examples([missing], spec)


def test_apply_table_sorts_strings_by_length_and_restores_the_order(modules_dir):
    import pyarrow as pa

    from modules import text_features

    texts = ["a long sentence of several words", "", "mid size", "z", "ünïcödé"]
    loaded = LoadedModule(beam_hub.load(modules_dir["text_embedder"]))
    seen = []
    inner = loaded.apply_columns
    loaded.apply_columns = lambda inputs, apply, n: seen.append(list(inputs)) or inner(inputs, apply, n)
    out = loaded.apply_table(pa.table({"text": texts}), "text", ApplySpec(), output_column="e", max_rows=2)
    assert out.column("e").to_pylist() == [text_features(t) for t in texts]
    # by length (the sub-batches may be called side by side: in any order)
    assert sorted(seen) == sorted([["", "z"], ["mid size", "ünïcödé"], ["a long sentence of several words"]])


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_apply_table_calls_sub_batches_side_by_side_with_the_same_outputs(modules_dir, monkeypatch, threads):
    import threading

    import pyarrow as pa

    from modules import text_features

    monkeypatch.setenv("BEAM_HUB_CALL_THREADS", threads)
    texts = [f"text {i} " + "word " * (i % 7) for i in range(40)]
    loaded = LoadedModule(beam_hub.load(modules_dir["text_embedder"]))
    callers = set()
    inner = loaded.apply_columns
    loaded.apply_columns = lambda inputs, apply, n: (
        callers.add(threading.current_thread().name) or inner(inputs, apply, n)
    )
    out = loaded.apply_table(pa.table({"text": texts}), "text", ApplySpec(), output_column="e", max_rows=3)
    assert out.column("e").to_pylist() == [text_features(t) for t in texts]
    on_threads = {name for name in callers if name.startswith("beam-hub-call")}
    assert (callers == {threading.current_thread().name}) if threads == "1" else (callers == on_threads)
    assert not [t for t in threading.enumerate() if t.name.startswith("beam-hub-call")]  # none left


def test_minilm_gives_the_same_bits_on_one_thread_and_on_two(minilm_cache, monkeypatch):
    import pyarrow as pa

    texts = [f"Sentence number {i} says " + "more " * (i % 11) for i in range(96)]
    loaded = LoadedModule(beam_hub.load("builtin://all-MiniLM-L6-v2", cache_dir=minilm_cache))
    table = pa.table({"text": texts})
    outputs = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("BEAM_HUB_CALL_THREADS", threads)
        out = loaded.apply_table(table, "text", ApplySpec(), output_column="e", max_rows=16)
        outputs[threads] = np.stack(out.column("e").to_numpy(zero_copy_only=False))
    assert np.array_equal(outputs["1"], outputs["2"])


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_call_threads_setting_is_checked(monkeypatch, value):
    from beam_hub import settings
    from beam_hub.errors import ConfigError

    monkeypatch.setenv("BEAM_HUB_CALL_THREADS", value)
    with pytest.raises(ConfigError, match="BEAM_HUB_CALL_THREADS"):
        settings.call_threads()
