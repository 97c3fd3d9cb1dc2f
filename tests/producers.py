"""SavedModels as the tools people use write them: Keras 3, tf_keras, tf.saved_model.save with
assets, and TF1's SavedModelBuilder. Each maker returns a ``Produced``: the directory and one call
to compare beam_hub with tensorflow_hub on (a signature and its inputs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURES = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], np.float32)
WORDS = np.array([b"apple", b"kiwi", b"banana", b"unknown-word"])
VOCAB = ["apple", "banana", "cherry", "kiwi"]


@dataclass(frozen=True)
class Produced:
    path: str
    signature: str  # the signature the comparison calls
    inputs: dict[str, Any]
    # name -> (inputs, outputs), each {name: (dtype, shape)} as `beam-hub inspect --json` shows them
    signatures: dict[str, tuple[dict[str, Spec], dict[str, Spec]]] = field(default_factory=dict)


Spec = tuple[str, list[int | None]]
FLOATS_3: Spec = ("float32", [None, 3])


def keras3_export(path: str) -> Produced:
    """``model.export(path)`` of a Keras 3 functional model (signatures serve and serving_default)."""
    import keras

    inp = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(4, activation="relu", name="hidden", kernel_initializer="glorot_uniform")(inp)
    out = keras.layers.Dense(2, name="logits", kernel_initializer="glorot_uniform")(hidden)
    keras.utils.set_random_seed(7)
    model = keras.Model(inp, out)
    model.export(path, verbose=False)
    sig = ({"features": FLOATS_3}, {"output_0": ("float32", [None, 2])})
    return Produced(path, "serving_default", {"features": FEATURES}, {"serve": sig, "serving_default": sig})


def tf_keras_save(path: str) -> Produced:
    """tf_keras ``model.save(path, save_format="tf")``: a SavedModel with ``keras_metadata.pb``."""
    import tf_keras

    tf_keras.utils.set_random_seed(7)
    inp = tf_keras.Input((3,), name="features")
    hidden = tf_keras.layers.Dense(4, activation="relu", name="hidden")(inp)
    out = tf_keras.layers.Dense(2, name="logits")(hidden)
    model = tf_keras.Model(inp, out)
    model.save(path, save_format="tf")
    assert os.path.isfile(os.path.join(path, "keras_metadata.pb"))
    return Produced(
        path,
        "serving_default",
        {"features": FEATURES},
        {"serving_default": ({"features": FLOATS_3}, {"logits": ("float32", [None, 2])})},
    )


def assets_module(path: str, vocab_name: str = "vocab.txt") -> Produced:
    """``tf.saved_model.save`` of a tf.Module with a vocabulary table read from an asset and three
    signatures (``lookup``, ``embed``, ``serving_default``); ``vocab_name`` is the asset's file name."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = os.path.join(tmp, vocab_name)
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.write("\n".join(VOCAB) + "\n")

        class Vocab(tf.Module):
            def __init__(self) -> None:
                super().__init__()
                self.vocab = tf.saved_model.Asset(vocab_file)
                init = tf.lookup.TextFileInitializer(
                    self.vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                    tf.lookup.TextFileIndex.LINE_NUMBER,
                )  # fmt: skip
                self.table = tf.lookup.StaticHashTable(init, default_value=-1)
                rows = np.arange(len(VOCAB) * 3, dtype=np.float32).reshape(len(VOCAB), 3) / 10
                self.embeddings = tf.Variable(
                    np.vstack([rows, np.zeros((1, 3), np.float32)]), name="embeddings"
                )

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
            def lookup(self, words):
                return {"ids": self.table.lookup(words)}

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
            def embed(self, words):
                ids = self.table.lookup(words)
                ids = tf.where(ids < 0, tf.constant(len(VOCAB), tf.int64), ids)
                return {"embedding": tf.gather(self.embeddings, ids), "known": ids < len(VOCAB)}

        m = Vocab()
        tf.saved_model.save(
            m, path, signatures={"lookup": m.lookup, "embed": m.embed, "serving_default": m.embed}
        )
    words = {"words": ("string", [None])}
    embedded = {"embedding": FLOATS_3, "known": ("bool", [None])}
    return Produced(
        path,
        "embed",
        {"words": WORDS},
        {
            "lookup": (words, {"ids": ("int64", [None])}),
            "embed": (words, embedded),
            "serving_default": (words, embedded),
        },
    )


def tf1_builder(path: str) -> Produced:
    """A TF1 graph saved with ``SavedModelBuilder`` under the ``serve`` tag, with a
    ``serving_default`` predict signature (what TF1 Estimators and TF Serving tutorials wrote)."""
    import tensorflow as tf

    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="features")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0]]))
        b = tf.compat.v1.get_variable("b", initializer=tf.constant([0.25, -0.25]))
        scores = tf.nn.softmax(tf.matmul(x, w) + b, name="scores")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            sig = tf.compat.v1.saved_model.predict_signature_def({"features": x}, {"scores": scores})
            builder.add_meta_graph_and_variables(
                sess,
                tags=[tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": sig},
            )
            builder.save()
    return Produced(
        path,
        "serving_default",
        {"features": FEATURES},
        {"serving_default": ({"features": FLOATS_3}, {"scores": ("float32", [None, 2])})},
    )


PRODUCERS = {
    "keras3-export": keras3_export,
    "tf-keras-save": tf_keras_save,
    "saved-model-assets": assets_module,
    "tf1-builder": tf1_builder,
}
