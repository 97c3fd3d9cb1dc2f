import os
import re

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

import beam_hub
from helpers import counters, run_pipeline

W = np.array([1.0, 2.0, 3.0], np.float32)
ROWS = [np.array([i, i + 1, i + 2], np.float32) for i in range(50)]


def expected(rows, scale=1.0):
    return [[float(r @ W) * scale] for r in rows]


@pytest.fixture
def fresh_module(one_input, tmp_path):
    """A copy under a path no other test has loaded (loads are shared per process by handle)."""
    import shutil

    return shutil.copytree(one_input, tmp_path / "module")


def test_single_values_in_arrays_out_with_metrics(fresh_module):
    def build(p):
        out = p | beam.Create(ROWS) | beam_hub.ApplyHubModule(fresh_module, max_batch_size=8)
        assert_that(out | beam.Map(lambda a: a.tolist()), equal_to(expected(ROWS)))

    metrics = counters(run_pipeline(build))
    assert metrics["module_loads"] == 1
    assert metrics["inference_elements"] == len(ROWS)
    assert metrics["inference_batches"] >= len(ROWS) // 8
    assert metrics["batch_size.count"] == metrics["inference_batches"]
    assert metrics["inference_msecs.count"] == metrics["inference_batches"]
    assert metrics["load_msecs.count"] == 1


def test_two_transforms_of_one_module_share_one_load(fresh_module):
    def build(p):
        rows = p | beam.Create(ROWS)
        a = rows | "A" >> beam_hub.ApplyHubModule(fresh_module)
        b = rows | "B" >> beam_hub.ApplyHubModule(fresh_module, signature="__call__")
        assert_that(a | "la" >> beam.Map(lambda x: x.tolist()), equal_to(expected(ROWS)), label="checkA")
        assert_that(b | "lb" >> beam.Map(lambda x: x.tolist()), equal_to(expected(ROWS)), label="checkB")

    assert counters(run_pipeline(build))["module_loads"] == 1


def test_keyed_elements(one_input):
    def build(p):
        out = (
            p
            | beam.Create([(f"k{i}", r) for i, r in enumerate(ROWS)])
            | beam_hub.ApplyHubModule(one_input, keyed=True)
            | beam.MapTuple(lambda k, a: (k, a.tolist()))
        )
        assert_that(out, equal_to([(f"k{i}", e) for i, e in enumerate(expected(ROWS))]))

    run_pipeline(build)


def test_dict_inputs_and_as_dict_outputs(fruit):
    elements = [{"apples": r, "oranges": r * 2} for r in ROWS[:10]]

    def build(p):
        out = (
            p
            | beam.Create(elements)
            | beam_hub.ApplyHubModule(fruit, signature="fruit_to_pet", as_dict=True)
            | beam.Map(lambda d: (sorted(d), d["cats"].tolist(), d["dogs"].tolist()))
        )
        want = [
            (["cats", "dogs"], (e["apples"] @ np.eye(3, 2)).tolist(), [float(e["oranges"].sum() * 0.5 * 10)])
            for e in elements
        ]
        assert_that(out, equal_to(want))

    run_pipeline(build)


def test_output_key(fruit):
    elements = [{"apples": r, "oranges": r} for r in ROWS[:5]]

    def build(p):
        out = (
            p
            | beam.Create(elements)
            | beam_hub.ApplyHubModule(fruit, signature="fruit_to_pet", output_key="dogs")
            | beam.Map(lambda a: a.tolist())
        )
        assert_that(out, equal_to([[float(e["oranges"].sum() * 5)] for e in elements]))

    run_pipeline(build)


def test_strings_of_any_length_batch(fruit):
    texts = ["", "a", "héllo wörld", "日本語のテキスト" * 50, "x" * 10_000]

    def build(p):
        out = (
            p
            | beam.Create(texts)
            | beam_hub.ApplyHubModule(fruit, signature="name_length", min_batch_size=5, max_batch_size=5)
            | beam.Map(int)
        )
        assert_that(out, equal_to([len(t) for t in texts]))

    run_pipeline(build)


def test_serialized_tf_examples(fruit):
    import tensorflow as tf

    def example(apples, oranges):
        return tf.train.Example(
            features=tf.train.Features(
                feature={
                    "apples": tf.train.Feature(float_list=tf.train.FloatList(value=apples)),
                    "oranges": tf.train.Feature(float_list=tf.train.FloatList(value=oranges)),
                    "unused": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
                }
            )
        ).SerializeToString()

    records = [example(r, r + 1) for r in ROWS[:20]]

    def build(p):
        out = (
            p
            | beam.Create(records)
            | beam_hub.ApplyHubModule(fruit, signature="fruit_to_pet", output_key="cats", from_examples=True)
            | beam.Map(lambda a: a.tolist())
        )
        assert_that(out, equal_to([(r @ np.eye(3, 2)).tolist() for r in ROWS[:20]]))

    run_pipeline(build)


def test_dead_letter_output_keeps_the_job_alive(one_input):
    bad = [np.ones(4, np.float32), "not a number", np.ones((2, 3), np.float32)]
    elements = ROWS[:10] + bad

    def build(p):
        good, failed = (
            p
            | beam.Create(elements)
            | beam_hub.ApplyHubModule(one_input, max_batch_size=4).with_exception_handling()
        )
        assert_that(good | beam.Map(lambda a: a.tolist()), equal_to(expected(ROWS[:10])), label="good")
        assert_that(
            failed | beam.Map(lambda f: (repr(f.element)[:12], f.error_type, "expects" in f.error)),
            equal_to([(repr(e)[:12], "InputError", True) for e in bad]),
            label="failed",
        )

    run_pipeline(build)


def test_without_dead_letter_the_error_names_the_element_and_inputs(one_input):
    def build(p):
        _ = p | beam.Create(ROWS[:3] + [np.ones(5, np.float32)]) | beam_hub.ApplyHubModule(one_input)

    with pytest.raises(Exception) as e:
        run_pipeline(build)
    msg = str(e.value)
    assert "failed on element array([1., 1., 1., 1., 1.]" in msg
    assert "default(x: float32[?, 3])" in msg and "with_exception_handling" in msg


def test_unknown_signature_fails_with_the_list(one_input):
    def build(p):
        _ = p | beam.Create(ROWS[:2]) | beam_hub.ApplyHubModule(one_input, signature="nope")

    with pytest.raises(
        Exception, match=r"no signature 'nope'. Available signatures: default\(x: float32\[\?, 3\]\)"
    ):
        run_pipeline(build)


def test_keyed_requires_pairs(one_input):
    def build(p):
        _ = p | beam.Create(ROWS[:2]) | beam_hub.ApplyHubModule(one_input, keyed=True)

    with pytest.raises(Exception, match=r"keyed=True\) takes \(key, value\) pairs"):
        run_pipeline(build)


def test_http_handle_resolves_through_the_cache(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz)

    def build(p):
        out = (
            p
            | beam.Create(ROWS[:5])
            | beam_hub.ApplyHubModule(url, cache_dir=cache_dir)
            | beam.Map(lambda a: a.tolist())
        )
        assert_that(out, equal_to(expected(ROWS[:5])))

    run_pipeline(build)
    assert server.gets("/m") == 1


def test_multi_processing_loads_once_per_worker_process(one_input):
    elements = [(i, np.full(3, i, np.float32)) for i in range(400)]

    def build(p):
        out = (
            p
            | beam.Create(elements)
            | beam.Reshuffle()
            | beam_hub.ApplyHubModule(one_input, keyed=True, max_batch_size=16)
            | beam.MapTuple(lambda k, a: (k, float(a[0]), os.getpid()))
        )
        assert_that(
            out | beam.MapTuple(lambda k, v, pid: (k, v)), equal_to([(i, 6.0 * i) for i in range(400)])
        )
        pids = out | beam.MapTuple(lambda k, v, pid: pid) | beam.Distinct() | beam.combiners.Count.Globally()
        assert_that(pids, equal_to([2]), label="two worker processes did the work")

    metrics = counters(
        run_pipeline(build, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    )
    assert metrics["module_loads"] == 2
    assert metrics["inference_elements"] == 400


@pytest.mark.parametrize("large_model, copies", [(False, 2), (True, 1)])
def test_large_model_keeps_one_copy_per_machine(tmp_path, monkeypatch, large_model, copies):
    """Two worker processes: one copy each, or with large_model=True one for the machine, whose
    files in the temp directory are named by a digest, never after the handle's path."""
    import modules

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # for the worker processes
    (tmp_path / "tmp").mkdir()
    loads = tmp_path / "loads"
    path = modules.make_load_counter(str(tmp_path / "m"), str(loads))
    elements = [(i, np.full(3, i, np.float32)) for i in range(400)]

    def build(p):
        out = (
            p
            | beam.Create(elements)
            | beam.Reshuffle()
            | beam_hub.ApplyHubModule(path, keyed=True, large_model=large_model, max_batch_size=16)
            | beam.MapTuple(lambda k, a: (k, float(a[0])))
        )
        assert_that(out, equal_to([(i, 6.0 * i) for i in range(400)]))

    metrics = counters(
        run_pipeline(build, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    )
    assert metrics["inference_elements"] == 400
    assert len(os.listdir(loads)) == copies
    ours = [n for n in os.listdir(tmp_path / "tmp") if "beam_hub" in n]
    assert all(re.fullmatch(r"beam_hub-[0-9a-f]{32}\.(lock|address)", n) for n in ours), ours
    assert bool(ours) == large_model


@pytest.mark.parametrize("sort", [False, True])
def test_sort_key_gives_batches_of_similar_elements(tmp_path, sort):
    import random

    import modules

    module = modules.make_batch_longest(str(tmp_path / "longest"))
    rng = random.Random(0)
    texts = ["x" * rng.randrange(1, 200) for _ in range(256)]
    sort_args = {"sort_key": len, "sort_window": 64} if sort else {}

    def build(p):
        out = (
            p
            | beam.Create([(i, t) for i, t in enumerate(texts)])
            | beam_hub.ApplyHubModule(module, keyed=True, min_batch_size=8, max_batch_size=8, **sort_args)
            | beam.MapTuple(lambda i, longest: (i, int(longest)))
        )
        assert_that(out | beam.combiners.ToList(), check)

    def check(results):
        got = dict(results[0])
        assert sorted(got) == list(range(len(texts)))  # every element, once
        padding = sum(got[i] - len(t) for i, t in enumerate(texts))
        assert (padding < 0.25 * sum(map(len, texts))) is sort, padding

    run_pipeline(build)


def test_a_sort_key_that_fails_on_an_element_leaves_it_to_the_module(one_input):
    rows = [ROWS[0], None, ROWS[1]]  # len(None) fails; the module then rejects None

    def build(p):
        good, failed = (
            p
            | beam.Create(list(enumerate(rows)))
            | beam_hub.ApplyHubModule(
                one_input, keyed=True, sort_key=len, max_batch_size=4
            ).with_exception_handling()
        )
        assert_that(
            good | beam.MapTuple(lambda i, a: (i, a.tolist())),
            equal_to([(0, expected([ROWS[0]])[0]), (2, expected([ROWS[1]])[0])]),
            label="good",
        )
        assert_that(failed | beam.Map(lambda f: f.element[0]), equal_to([1]), label="failed")

    run_pipeline(build)


def test_a_sort_key_whose_values_do_not_compare_keeps_every_element(tmp_path):
    import modules

    module = modules.make_batch_longest(str(tmp_path / "longest"))
    texts = ["a", "bbbb", "cc", "dddddd", "e"]

    def mixed(text):  # str for some, int for others: they cannot be sorted together
        return text if len(text) > 3 else len(text)

    def build(p):
        out = (
            p
            | beam.Create(list(enumerate(texts)))
            | beam_hub.ApplyHubModule(module, keyed=True, sort_key=mixed, max_batch_size=2)
            | beam.Keys()
        )
        assert_that(out, equal_to(list(range(len(texts)))))

    run_pipeline(build)
