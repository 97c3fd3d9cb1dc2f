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
