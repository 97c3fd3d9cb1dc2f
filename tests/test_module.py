import numpy as np
import pytest

import beam_hub
from beam_hub.errors import (
    InputError,
    MissingCustomOpError,
    ModuleLoadError,
    OutputKeyError,
    SignatureNotFoundError,
)

X = np.array([[1, 2, 3], [0, 0, 1]], np.float32)


@pytest.fixture(scope="module")
def fruit_module(fruit):
    return beam_hub.load(fruit)


@pytest.fixture(scope="module")
def linear(one_input):
    return beam_hub.load(one_input)


def test_seed_call_form(fruit_module):
    out = fruit_module({"apples": X, "oranges": X}, signature="fruit_to_pet", as_dict=True)
    np.testing.assert_allclose(out["cats"], X @ np.eye(3, 2))
    np.testing.assert_allclose(out["dogs"], X @ np.full((3, 1), 0.5) * 10)
    assert isinstance(out["cats"], np.ndarray)
    dogs = fruit_module({"apples": X, "oranges": X}, signature="fruit_to_pet", output_key="dogs")
    np.testing.assert_allclose(dogs, out["dogs"])


def test_default_signature_and_default_output(linear):
    assert linear.default_signature == "default"
    y = linear(X)
    np.testing.assert_allclose(y, X @ np.array([[1.0], [2.0], [3.0]]))
    np.testing.assert_allclose(linear(X, signature="default"), y)
    np.testing.assert_allclose(linear({"x": X}), y)
    np.testing.assert_allclose(linear(X.tolist()), y)  # lists convert
    np.testing.assert_allclose(linear(X.astype(np.float64)), y)  # to the spec's dtype
    np.testing.assert_allclose(linear(np.array([[1, 2, 3]])), [[14.0]])  # ints too
    assert linear(X, as_dict=True).keys() == {"default"}


def test_signatures_describe_inputs_and_outputs(fruit_module):
    spec = fruit_module.signatures["fruit_to_pet"]
    assert list(spec.inputs) == ["apples", "oranges"]
    assert spec.inputs["apples"].dtype.name == "float32"
    assert spec.inputs["apples"].shape.as_list() == [None, 3]
    assert set(spec.outputs) == {"cats", "dogs"}
    assert str(spec) == (
        "fruit_to_pet(apples: float32[?, 3], oranges: float32[?, 3]) "
        "-> {cats: float32[?, 2], dogs: float32[?, 1]}"
    )


def test_strings_in(fruit_module):
    np.testing.assert_array_equal(fruit_module(["héllo", "", "日本"], signature="name_length"), [5, 0, 2])
    np.testing.assert_array_equal(fruit_module(np.array(["ab", "c"]), signature="name_length"), [2, 1])
    np.testing.assert_array_equal(fruit_module([b"ab"], signature="name_length"), [2])


def test_unknown_signature_lists_the_available_ones(fruit_module):
    with pytest.raises(SignatureNotFoundError) as e:
        fruit_module(X, signature="fruit_to_cat")
    assert "fruit_to_pet(apples: float32[?, 3]" in str(e.value) and "name_length" in str(e.value)


def test_missing_and_unexpected_inputs_name_the_expected_keys(fruit_module):
    with pytest.raises(InputError) as e:
        fruit_module({"apples": X}, signature="fruit_to_pet")
    msg = str(e.value)
    assert "missing ['oranges']" in msg and "apples: float32[?, 3]" in msg and "oranges: float32[?, 3]" in msg
    with pytest.raises(InputError, match=r"unexpected \['pears'\]"):
        fruit_module({"apples": X, "oranges": X, "pears": X}, signature="fruit_to_pet")
    with pytest.raises(InputError, match="takes 2 inputs"):
        fruit_module(X, signature="fruit_to_pet")


def test_wrong_dtype_and_shape_are_clear(linear, fruit_module):
    with pytest.raises(InputError, match=r"expects shape \[\?, 3\], got \[2, 4\]"):
        linear(np.ones((2, 4), np.float32))
    with pytest.raises(InputError, match="expects float32, got strings"):
        linear([["a", "b", "c"]])
    with pytest.raises(InputError, match="expects string"):
        import tensorflow as tf

        fruit_module(tf.constant([1.0]), signature="name_length")


def test_output_key_errors_list_the_keys(fruit_module):
    with pytest.raises(OutputKeyError, match=r"outputs \['cats', 'dogs'\] and none is named 'default'"):
        fruit_module({"apples": X, "oranges": X}, signature="fruit_to_pet")
    with pytest.raises(OutputKeyError, match=r"no output 'cows'.*\['cats', 'dogs'\]"):
        fruit_module({"apples": X, "oranges": X}, signature="fruit_to_pet", output_key="cows")


def test_reusable_saved_model_api(fruit_module):
    assert fruit_module.default_signature == "__call__"  # no "default"/"serving_default" signature
    np.testing.assert_allclose(fruit_module(X, training=True), 2 * fruit_module(X))
    names = sorted(v.name for v in fruit_module.variables)
    assert names == ["cat_w:0", "dog_w:0", "scale:0"]
    assert sorted(v.name for v in fruit_module.trainable_variables) == ["cat_w:0", "dog_w:0"]
    (loss,) = fruit_module.regularization_losses
    assert float(loss()) == pytest.approx(0.01 * 2)
    with pytest.raises(InputError, match="takes no training argument"):
        fruit_module(["a"], signature="name_length", training=True)


def test_tensors_out_for_gradients(fruit_module):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y = fruit_module(tf.constant(X), numpy=False, training=True)
        loss = tf.reduce_sum(y)
    grads = tape.gradient(loss, fruit_module.trainable_variables)
    assert any(g is not None for g in grads)


def test_keras_exported_module(modules_dir):
    m = beam_hub.load(modules_dir["keras"])
    assert m.default_signature == "serving_default"
    np.testing.assert_allclose(m(X), X.sum(axis=1, keepdims=True).repeat(2, axis=1))


def test_tf1_hub_format_loads_with_empty_tags(modules_dir):
    m = beam_hub.load(modules_dir["tf1"])
    assert m.is_tf1_format and m.tags == []
    np.testing.assert_allclose(m(X), X @ np.array([[1.0], [2.0], [3.0]]))
    with pytest.raises(ModuleLoadError, match="tags"):
        beam_hub.load(modules_dir["tf1"], tags=["train"])


def test_custom_op_names_the_op_and_the_package(modules_dir):
    with pytest.raises(MissingCustomOpError) as e:
        beam_hub.load(modules_dir["custom_op"])
    assert e.value.op == "CaseFoldUTF8" and e.value.package == "tensorflow_text"
    assert "import tensorflow_text" in str(e.value)


def test_load_through_http_and_cache(server, one_input_tgz, cache_dir):
    m = beam_hub.load(server.add("/m", one_input_tgz))
    assert m.path.startswith(cache_dir)
    np.testing.assert_allclose(m(X), X @ np.array([[1.0], [2.0], [3.0]]))
