"""Tiny modules for tests, made with tf.Module and tf.saved_model.save (and Keras, and TF1)."""

from __future__ import annotations

import os

import numpy as np

W = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)


def make_one_input(path: str, scale: float = 1.0) -> str:
    """A one-input module: "default" signature x: float32[?,3] -> {"default": x @ (scale * W)}; __call__ too."""
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(W * np.float32(scale), name="w")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            return tf.matmul(x, self.w)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"default": tf.matmul(x, self.w)}

    m = Linear()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def make_fruit(path: str) -> str:
    """The key-concepts module: fruit_to_pet(apples, oranges) -> {cats, dogs}; a string signature;
    a Reusable SavedModel __call__(x, training) with regularization losses."""
    import tensorflow as tf

    class Fruit(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cat_w = tf.Variable(np.eye(3, 2, dtype=np.float32), name="cat_w")
            self.dog_w = tf.Variable(np.full((3, 1), 0.5, np.float32), name="dog_w")
            self.scale = tf.Variable(10.0, trainable=False, name="scale")
            self.regularization_losses = [
                tf.function(lambda: 0.01 * tf.reduce_sum(tf.square(self.cat_w)), input_signature=[])
            ]

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="apples"),
                tf.TensorSpec([None, 3], tf.float32, name="oranges"),
            ]
        )
        def fruit_to_pet(self, apples, oranges):
            return {
                "cats": tf.matmul(apples, self.cat_w),
                "dogs": tf.matmul(oranges, self.dog_w) * self.scale,
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="names")])
        def name_length(self, names):
            return {"default": tf.strings.length(names, unit="UTF8_CHAR")}

        @tf.function(
            input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"), tf.TensorSpec([], tf.bool)]
        )
        def __call__(self, x, training=False):
            y = tf.matmul(x, self.cat_w)
            return y * 2.0 if training else y

    m = Fruit()
    tf.saved_model.save(m, path, signatures={"fruit_to_pet": m.fruit_to_pet, "name_length": m.name_length})
    return path


def make_keras(path: str) -> str:
    """A Keras 3 model exported with model.export (signature "serving_default")."""
    import keras

    inp = keras.Input((3,), name="features")
    out = keras.layers.Dense(2, name="logits", kernel_initializer="ones", bias_initializer="zeros")(inp)
    model = keras.Model(inp, out)
    model.export(path, verbose=False)
    return path


def make_tf1(path: str) -> str:
    """The TF1 Hub format: a TF1 SavedModel with empty tags, a "default" signature and tfhub_module.pb."""
    import tensorflow as tf

    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(W))
        y = tf.matmul(x, w)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"default": y})
            builder.add_meta_graph_and_variables(sess, tags=[], signature_def_map={"default": sig})
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # ModuleDef(format=FORMAT_V3)
    return path


def make_custom_op(path: str) -> str:
    """A one-input module whose graph names an op from tensorflow_text (not registered here)."""
    from tensorflow.core.protobuf import saved_model_pb2

    make_one_input(path)
    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        sm.ParseFromString(f.read())
    for fn in sm.meta_graphs[0].graph_def.library.function:
        for node in fn.node_def:
            if node.op == "MatMul":
                node.op = "CaseFoldUTF8"
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())
    return path


def _features(sentences):
    """(chars, bytes, words, 1) per text, as float32 [batch, 4] (in TensorFlow ops)."""
    import tensorflow as tf

    chars = tf.cast(tf.strings.length(sentences, unit="UTF8_CHAR"), tf.float32)
    nbytes = tf.cast(tf.strings.length(sentences), tf.float32)
    words = tf.cast(tf.strings.split(sentences).row_lengths(), tf.float32)
    return tf.stack([chars, nbytes, words, tf.ones_like(chars)], axis=1)


def make_text_embedder(path: str) -> str:
    """Strings in, float32 [batch, 4] out: (chars, bytes, words, 1) per text. Cheap and exact."""
    import tensorflow as tf

    class Embed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
        def serve(self, sentences):
            return {"default": _features(sentences)}

    m = Embed()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def text_features(text: str) -> list[float]:
    return [float(len(text)), float(len(text.encode())), float(len(text.split())), 1.0]


def make_random_relu(path: str, hidden: int = 8, seed: int = 1, training_arg: bool = True) -> str:
    """A small ReLU base over 2 floats: __call__(x, training) -> relu(x @ W + b), trainable, with an
    L2 regularization loss. W starts rank one (every unit sees the same projection of x), so frozen
    features cannot tell x1*x2 > 0 apart; fine-tuning can turn the units. ``training_arg=False``
    exports __call__(x) alone, as many TF2 SavedModels are."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class Base(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            w = np.outer([1.0, 0.7], rng.standard_normal(hidden)) + 0.01 * rng.standard_normal((2, hidden))
            self.w = tf.Variable(w.astype(np.float32), name="w")
            self.b = tf.Variable(0.1 * rng.standard_normal(hidden).astype(np.float32), name="b")
            self.regularization_losses = [
                tf.function(lambda: 1e-4 * tf.reduce_sum(tf.square(self.w)), input_signature=[])
            ]

        def forward(self, x):
            return tf.nn.relu(tf.matmul(x, self.w) + self.b)

    spec = tf.TensorSpec([None, 2], tf.float32, name="x")
    base = Base()
    if training_arg:
        base.__call__ = tf.function(
            lambda x, training=False: base.forward(x), input_signature=[spec, tf.TensorSpec([], tf.bool)]
        )
    else:
        base.__call__ = tf.function(base.forward, input_signature=[spec])
    tf.saved_model.save(base, path)
    return path


def make_image_module(path: str, size: int = 8) -> str:
    """Images float32 [batch, size, size, 3] in [0, 1] -> their mean colour, [batch, 3]."""
    import tensorflow as tf

    class Image(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def serve(self, images):
            return {"default": tf.reduce_mean(images, axis=[1, 2])}

    m = Image()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def make_load_counter(path: str, loads_dir: str) -> str:
    """Like make_one_input, but every ``tf.saved_model.load`` of it writes one file into ``loads_dir``
    (a resource initializer with a WriteFile), so tests can count the copies a job loaded."""
    import tensorflow as tf

    class Counter(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.int64, shape=[], shared_name="")

        def _initialize(self):
            suffix = tf.strings.as_string(tf.random.uniform([], maxval=2**62, dtype=tf.int64))
            tf.io.write_file(tf.strings.join([loads_dir, "/load-", suffix]), "loaded")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(1, tf.int64))

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.counter = Counter()
            self.w = tf.Variable(W, name="w")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"default": tf.matmul(x, self.w)}

    os.makedirs(loads_dir, exist_ok=True)
    m = Linear()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    for name in os.listdir(loads_dir):  # saving may have run the initializer: count loads only
        os.unlink(os.path.join(loads_dir, name))
    return path


def make_weights(path: str, mb: int) -> str:
    """A one-input module carrying ``mb`` MB of incompressible weights (for disk, size and memory
    tests and benches); every call reads all of them."""
    import tensorflow as tf

    class Weights(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(0).standard_normal(mb * 2**18).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"default": x * self.w[0] + tf.reduce_mean(self.w)}

    m = Weights()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def make_picky_embedder(path: str) -> str:
    """Like make_text_embedder, but a batch holding the text "poison" fails (an InvalidArgumentError
    from inside the graph, as a real module's checks raise): for dead-letter tests."""
    import tensorflow as tf

    class Picky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
        def serve(self, sentences):
            ok = tf.reduce_all(tf.not_equal(sentences, "poison"))
            with tf.control_dependencies([tf.debugging.Assert(ok, ["the module cannot embed poison"])]):
                return {"default": _features(sentences)}

    m = Picky()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def make_batch_longest(path: str) -> str:
    """Strings in; each row gets the length of the longest string in its batch (how a text model pads)."""
    import tensorflow as tf

    class Longest(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            lengths = tf.strings.length(text)
            return {"default": tf.fill(tf.shape(lengths), tf.reduce_max(lengths))}

    m = Longest()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path
