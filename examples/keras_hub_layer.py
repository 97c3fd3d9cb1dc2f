"""A Keras 3 model with a hub layer: train the module's weights with a new head, save, reload.

    python examples/keras_hub_layer.py [WORK_DIR]

Builds a small module (``tf.Module`` with a trainable ``__call__``), puts it in a Keras model with
``beam_hub.KerasLayer(handle, trainable=True)`` and a Dense head, trains both on a toy task, saves
the model as ``.keras`` and loads it back (the layer's config holds the handle).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import beam_hub


def build_module(path: str) -> str:
    import tensorflow as tf

    class Features(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(
                np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32), name="w"
            )

        @tf.function(
            input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"), tf.TensorSpec([], tf.bool)]
        )
        def __call__(self, x, training=False):  # the Reusable SavedModel call: Keras passes training
            return tf.nn.relu(tf.matmul(x, self.w))

    tf.saved_model.save(Features(), path)
    return path


def main(work: str) -> None:
    import keras

    handle = build_module(os.path.join(work, "features"))
    x = np.random.default_rng(1).uniform(-1, 1, (512, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            beam_hub.KerasLayer(handle, trainable=True),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    saved = os.path.join(work, "model.keras")
    model.save(saved)
    again = keras.saving.load_model(saved)
    same = np.allclose(model.predict(x[:8], verbose=0), again.predict(x[:8], verbose=0), atol=1e-6)
    print(f"accuracy after training: {history.history['accuracy'][-1]:.2f}")
    print(f"saved to {saved}; reloaded model gives the same predictions: {same}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary directory, removed on every exit: pass a directory to keep what it writes
        with tempfile.TemporaryDirectory(prefix="beam-hub-example-") as work:
            main(work)
