"""Signatures read from saved_model.pb without TensorFlow: the same as loading reports, for modules
made by tf.saved_model.save, Keras 3, tf_keras and TF1, and for modules that cannot be loaded here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import beam_hub
import modules
import producers
from beam_hub.errors import NotASavedModelError
from beam_hub.signature_defs import DTYPES, read_signatures
from helpers import REPO


def loaded(path: str, **kwargs) -> dict:
    module = beam_hub.load(path, audit="off", **kwargs)
    return {name: spec.to_json() for name, spec in module.signatures.items()}


def read(path: str) -> dict:
    return {
        name: {"inputs": s["inputs"], "outputs": s["outputs"]} for name, s in read_signatures(path).items()
    }


@pytest.mark.parametrize("name", ["one_input", "fruit", "keras", "text_embedder", "picky_embedder"])
def test_fixture_modules_read_as_loading_reports(modules_dir, name):
    assert read(modules_dir[name]) == loaded(modules_dir[name])


@pytest.mark.parametrize(
    ("make", "call"),
    [
        (modules.make_random_relu, True),  # __call__(x, training) traced with a bool spec
        (lambda path: modules.make_random_relu(path, training_arg=False), True),  # __call__(x) alone
        (modules.make_image_module, False),
        (modules.make_batch_longest, False),
    ],
)
def test_call_specs_read_as_loading_reports(make, call, tmp_path):
    path = make(str(tmp_path / "m"))
    assert read(path) == loaded(path)
    assert ("__call__" in read(path)) == call


@pytest.mark.parametrize("make", [producers.keras3_export, producers.tf_keras_save, producers.tf1_builder])
def test_modules_the_real_tools_write(make, tmp_path):
    made = make(str(tmp_path / "m"))
    found = read(made.path)
    for name, (inputs, outputs) in made.signatures.items():
        assert found[name] == {
            "inputs": {k: {"dtype": d, "shape": s} for k, (d, s) in inputs.items()},
            "outputs": {k: {"dtype": d, "shape": s} for k, (d, s) in outputs.items()},
        }


@pytest.mark.parametrize("make", [producers.keras3_export, producers.tf_keras_save, producers.tf1_builder])
def test_modules_the_real_tools_write_read_as_loading_reports(make, tmp_path):
    """``__call__`` included: tf_keras saves one traced for training and inference, Keras 3 none."""
    made = make(str(tmp_path / "m"))
    assert read(made.path) == loaded(made.path)


def test_tf1_hub_format_with_its_tags(modules_dir):
    signatures = read_signatures(modules_dir["tf1"])
    assert read(modules_dir["tf1"]) == loaded(modules_dir["tf1"])
    assert {s["tags"] == [] for s in signatures.values()} == {True}  # the hub format's empty tag set


def test_a_module_that_cannot_load_here_still_shows_its_signatures(modules_dir):
    """It needs an op from tensorflow_text: loading fails, reading does not."""
    with pytest.raises(Exception):  # noqa: B017 - any load failure; the point is the reader's success
        beam_hub.load(modules_dir["custom_op"], audit="off")
    assert read(modules_dir["custom_op"]) == read(modules_dir["one_input"])  # made from it, an op renamed


def test_reading_imports_no_tensorflow(modules_dir):
    code = (
        "import sys; from beam_hub.signature_defs import read_signatures as r; "
        f"s = r({modules_dir['fruit']!r}); assert 'fruit_to_pet' in s, s; "
        "assert not [m for m in sys.modules if m.startswith('tensorflow')], 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_the_dtype_table_is_tensorflows():
    import tensorflow as tf

    for number, name in DTYPES.items():
        assert tf.as_dtype(number).name == name


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", None),
        (b"\x12\xff\xff\xff\xff\x0f", "not a SavedModel protobuf"),
        (os.urandom(64) + b"\x0a\xff", None),
    ],
)
def test_garbage_is_an_error_or_nothing_never_a_crash(tmp_path, content, match):
    (tmp_path / "saved_model.pb").write_bytes(content)
    try:
        found = read_signatures(tmp_path)
    except NotASavedModelError as e:
        assert match is None or match in str(e)
    else:
        assert match is None and isinstance(found, dict)


def test_a_directory_without_the_file(tmp_path):
    with pytest.raises(NotASavedModelError, match="has no saved_model.pb"):
        read_signatures(tmp_path)


def _rewrite(src: str, dest, change) -> str:
    """A copy of the module ``src`` whose saved_model.pb ``change(saved)`` has edited."""
    import shutil

    from beam_hub.protos import read_saved_model

    shutil.copytree(src, dest)
    saved = read_saved_model(dest)
    change(saved)
    (dest / "saved_model.pb").write_bytes(saved.SerializeToString())
    return str(dest)


def _call_node(saved):
    graph = saved.meta_graphs[0].object_graph_def
    ref = next(c for c in graph.nodes[0].children if c.local_name == "__call__")
    return graph, ref


def _nest(value, depth: int) -> None:
    for _ in range(depth):
        value = value.list_value.values.add()
    value.tensor_spec_value.name = "deep"


@pytest.mark.parametrize(
    "damage",
    [
        lambda g, ref: setattr(ref, "node_id", 10_000),  # points past the object graph
        lambda g, ref: setattr(ref, "node_id", -1),
        lambda g, ref: setattr(ref, "node_id", 0),  # the root: a user object, not a function
        lambda g, ref: g.concrete_functions.clear(),  # traces named but absent
        lambda g, ref: [
            c.canonicalized_input_signature.Clear() for c in g.concrete_functions.values()
        ],  # not an (args, kwargs) pair
        lambda g, ref: [
            _nest(c.canonicalized_input_signature.tuple_value.values[0], 20)
            for c in g.concrete_functions.values()
        ],  # lists in lists where the tensor should be
    ],
)
def test_a_damaged_object_graph_gives_no_call_spec_and_no_crash(modules_dir, tmp_path, damage):
    path = _rewrite(modules_dir["fruit"], tmp_path / "m", lambda saved: damage(*_call_node(saved)))
    found = read_signatures(path)
    assert "__call__" not in found  # nothing guessed
    assert found["fruit_to_pet"] == read_signatures(modules_dir["fruit"])["fruit_to_pet"]


def test_a_signature_nested_past_the_parsers_limit_is_one_clear_error(modules_dir, tmp_path):
    """TensorFlow's parser stops at 100 nested messages, and so does the reader: no deep recursion."""
    path = _rewrite(
        modules_dir["fruit"],
        tmp_path / "m",
        lambda saved: _nest(
            _call_node(saved)[0]
            .concrete_functions[next(iter(_call_node(saved)[0].concrete_functions))]
            .canonicalized_input_signature,
            500,
        ),
    )
    with pytest.raises(NotASavedModelError, match="does not parse"):
        read_signatures(path)


def test_names_that_would_act_on_a_terminal_are_printed_as_repr(modules_dir, tmp_path):
    """Names come from the module's author: `beam-hub inspect` prints them, a terminal must not
    act on them; the names people give (any printable Unicode) print as they are."""
    from helpers import run_cli

    def rename(saved):
        graph = saved.meta_graphs[0]
        graph.meta_info_def.tags.append("\x1b]0;owned\x07")
        signature = graph.signature_def["fruit_to_pet"]
        signature.inputs["\x1b[2Japples"].CopyFrom(signature.inputs["apples"])
        signature.inputs["äpfel_größe"].CopyFrom(signature.inputs["oranges"])
        del signature.inputs["apples"], signature.inputs["oranges"]

    out = run_cli("inspect", _rewrite(modules_dir["fruit"], tmp_path / "m", rename)).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "input   '\\x1b[2Japples': float32[?, 3]" in out and "input   äpfel_größe: float32[?, 3]" in out
    assert "'\\x1b]0;owned\\x07'" in out
