import os

import keras
import numpy as np
import pytest

import beam_hub
from beam_hub import KerasLayer

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, (512, 2)).astype(np.float32)
Y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import modules

    return modules.make_random_relu(str(tmp_path_factory.mktemp("base") / "m"))


def model_with(layer):
    model = keras.Sequential([keras.Input((2,)), layer, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model


def test_trainable_layer_fine_tunes_the_module(base):
    layer = KerasLayer(base, trainable=True)
    model = model_with(layer)
    assert len(layer.trainable_weights) == 2  # the module's w and b
    before = [w.numpy().copy() for w in layer.trainable_weights]
    history = model.fit(X, Y, epochs=5, batch_size=64, verbose=0).history["loss"]
    assert history[-1] < history[0]
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, layer.trainable_weights))
    # the module itself changed: the layer's weights are the module's own variables
    assert np.allclose(layer._module.trainable_variables[0].numpy(), layer.trainable_weights[0].numpy())
    assert len(model.losses) == 1  # its regularization loss, added while training
    assert float(layer._regularization_losses[0]()) > 0


def test_frozen_layer_keeps_the_module(base):
    layer = KerasLayer(base)
    model = model_with(layer)
    before = [w.numpy().copy() for w in layer.weights]
    model.fit(X, Y, epochs=2, batch_size=64, verbose=0)
    assert layer.trainable_weights == [] and all(
        np.array_equal(a, w.numpy()) for a, w in zip(before, layer.weights)
    )


def test_functional_model_with_a_signature(fruit):
    apples, oranges = keras.Input((3,), name="apples"), keras.Input((3,), name="oranges")
    out = KerasLayer(fruit, signature="fruit_to_pet", output_key="dogs")(
        {"apples": apples, "oranges": oranges}
    )
    model = keras.Model([apples, oranges], out)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(model.predict([x, x], verbose=0), [[15.0], [15.0]])


def test_combinations_that_cannot_work_are_refused(base, fruit, modules_dir):
    with pytest.raises(ValueError, match="cannot be combined with trainable=True"):
        KerasLayer(fruit, signature="fruit_to_pet", trainable=True)
    with pytest.raises(ValueError, match="cannot be trained"):
        KerasLayer(modules_dir["keras"], trainable=True)
    with pytest.raises(beam_hub.errors.SignatureNotFoundError, match="Available signatures"):
        KerasLayer(fruit, signature="nope")


def test_save_load_and_export(base, tmp_path):
    model = model_with(KerasLayer(base, trainable=True))
    model.fit(X, Y, epochs=2, batch_size=64, verbose=0)
    expected = model.predict(X[:10], verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(X[:10], verbose=0), expected, atol=1e-6)
    assert loaded.layers[0].get_config()["handle"] == base
    model.export(str(tmp_path / "exported"), verbose=False)
    module = beam_hub.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(module(X[:10]), expected, atol=1e-5)
    assert os.path.isfile(tmp_path / "exported" / "saved_model.pb")
