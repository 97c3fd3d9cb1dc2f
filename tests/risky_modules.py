"""Modules that do more than compute, for the audit's tests: each hides a file, Python or
dataset op somewhere a scanner has to look for it. Tiny, built with tf.Module (and TF1)."""

from __future__ import annotations

import os


def make_writer(path: str, target: str) -> str:
    """A signature that writes its input to ``target`` (WriteFile in the serving function)."""
    import tensorflow as tf

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="x")])
        def __call__(self, x):
            tf.io.write_file(target, tf.strings.reduce_join(x))
            return {"default": tf.strings.length(x)}

    m = Writer()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_deep_writer(path: str, target: str) -> str:
    """The same WriteFile one function deeper: ``__call__`` calls a nested tf.function."""
    import tensorflow as tf

    class DeepWriter(tf.Module):
        @tf.function
        def remember(self, x):
            tf.io.write_file(target, tf.strings.reduce_join(x))
            return tf.strings.length(x)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="x")])
        def __call__(self, x):
            return {"default": self.remember(x)}

    m = DeepWriter()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_dataset_reader(path: str) -> str:
    """Reads the files its input names, inside a tf.data ``map`` function (a MapDataset's ``f``)."""
    import tensorflow as tf

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="x")])
        def __call__(self, x):
            contents = tf.data.Dataset.from_tensor_slices(x).map(tf.io.read_file)
            return {"default": contents.reduce(tf.constant(0), lambda n, s: n + tf.strings.length(s))}

    m = Reader()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_graph_in_a_dataset(path: str, target: str) -> str:
    """A DatasetFromGraph whose serialized graph (a string constant) writes ``target`` when the
    dataset is iterated: the WriteFile is in no function of the SavedModel's own library."""
    import tensorflow as tf

    def write(i):
        with tf.control_dependencies([tf.io.write_file(target, "written")]):
            return tf.identity(i)

    serialized = tf.data.Dataset.range(1).map(write)._as_serialized_graph().numpy()

    class Hidden(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="x")])
        def __call__(self, x):
            variant = tf.raw_ops.DatasetFromGraph(graph_def=tf.constant(serialized))
            ds = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.int64))
            return {"default": x + ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)}

    m = Hidden()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_py_function(path: str) -> str:
    """A signature that calls back into Python (tf.py_function saves as an EagerPyFunc node)."""
    import tensorflow as tf

    class Py(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def __call__(self, x):
            y = tf.py_function(lambda t: t * 2, [x], tf.float32)
            return {"default": y}

    m = Py()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_tf1_reader(path: str) -> str:
    """The TF1 Hub format with a "default" signature that reads the file its input names."""
    import tensorflow as tf

    with tf.Graph().as_default():
        name = tf.compat.v1.placeholder(tf.string, [], name="name")
        contents = tf.io.read_file(name)
        with tf.compat.v1.Session() as sess:
            builder = tf.compat.v1.saved_model.Builder(path)
            sig = tf.compat.v1.saved_model.predict_signature_def({"name": name}, {"default": contents})
            builder.add_meta_graph_and_variables(sess, tags=[], signature_def_map={"default": sig})
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # ModuleDef(format=FORMAT_V3)
    return path


def make_vocab_lookup(path: str, work: str) -> str:
    """A text module as they are made: a vocabulary table initialised from its own asset file."""
    import tensorflow as tf

    vocab = os.path.join(work, "vocab.txt")
    os.makedirs(work, exist_ok=True)
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("[UNK]\nthe\ncat\nsat\n")

    class Vocab(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            init = tf.lookup.TextFileInitializer(
                vocab,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self.table = tf.lookup.StaticHashTable(init, 0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
        def __call__(self, words):
            return {"default": self.table.lookup(words)}

    m = Vocab()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__})
    return path


def make_tf1_vocab_lookup(path: str, work: str) -> str:
    """The TF1 Hub format's text module: a table initialised from an asset in asset_file_def."""
    import tensorflow as tf

    vocab = os.path.join(work, "tf1_vocab.txt")
    os.makedirs(work, exist_ok=True)
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("[UNK]\nthe\ncat\n")
    with tf.Graph().as_default():
        words = tf.compat.v1.placeholder(tf.string, [None], name="words")
        asset = tf.constant(vocab, name="vocab_path")
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS, asset)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                asset,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            0,
        )
        ids = table.lookup(words)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.tables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            sig = tf.compat.v1.saved_model.predict_signature_def({"words": words}, {"default": ids})
            builder.add_meta_graph_and_variables(
                sess,
                tags=[],
                signature_def_map={"default": sig},
                assets_collection=tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS),
                main_op=tf.compat.v1.tables_initializer(),
            )
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")
    return path
