import glob
import hashlib

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

import beam_hub
from beam_hub.errors import FineTuneError
from beam_hub.examples import serialize
from beam_hub.train.finetune import FineTuneConfig, export, train
from helpers import run_pipeline

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, (3000, 2)).astype(np.float32)
Y = (X[:, 0] * X[:, 1] > 0).astype(int)  # the label depends on the product of the inputs
TRAIN, TEST = slice(0, 2000), slice(2000, None)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import modules

    return modules.make_random_relu(str(tmp_path_factory.mktemp("base") / "m"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "train.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for x, y in zip(X[TRAIN], Y[TRAIN]):
            w.write(serialize({"x": x, "y": int(y)}))
    return [path]


def config(base, **kw):
    settings = {"num_classes": 2, "epochs": 30, "learning_rate": 0.02, "patience": 5, **kw}
    return FineTuneConfig(base, "x", "y", **settings)


def accuracy(probabilities):
    return float((np.asarray(probabilities).argmax(1) == Y[TEST]).mean())


def test_fine_tuning_beats_the_frozen_base(base, shards):
    frozen = train(shards, config(base, train_base=False))
    tuned = train(shards, config(base))
    frozen_acc = accuracy(frozen.module.serve(X[TEST])["default"])
    tuned_acc = accuracy(tuned.module.serve(X[TEST])["default"])
    assert tuned_acc >= 0.9 and tuned_acc >= frozen_acc + 0.1, (frozen_acc, tuned_acc)
    assert tuned.train_examples == 1800 and tuned.validation_examples == 200
    assert tuned.metrics["validation_accuracy"] >= 0.9


def test_export_is_a_reusable_module_that_predicts_as_trained(base, shards, tmp_path):
    result = train(shards, config(base, epochs=5))
    expected = result.module.serve(X[TEST])["default"].numpy()
    path = export(result, config(base, epochs=5), str(tmp_path / "tuned"))
    mine = beam_hub.load(path)
    np.testing.assert_allclose(mine(X[TEST]), expected, atol=1e-6)
    assert mine.default_signature == "default" and "__call__" in mine.signatures
    assert len(mine.trainable_variables) == 4  # base w, b and head kernel, bias
    (reg,) = mine.regularization_losses
    assert float(reg()) > 0
    hub = pytest.importorskip("tensorflow_hub")
    theirs = hub.load(path)
    np.testing.assert_allclose(
        theirs.signatures["default"](inputs=tf.constant(X[TEST]))["default"].numpy(), expected, atol=1e-6
    )
    readme = open(f"{path}/README.md").read()
    assert (
        f"Fine-tuned from {base}" in readme
        and "validation_accuracy" in readme
        and "Training data: 1800" in readme
    )
    # fine-tunable again: the export itself trains
    again = train(shards, FineTuneConfig(path, "x", "y", num_classes=2, epochs=1, learning_rate=0.01))
    assert again.epochs_run == 1
    # the same model bytes pack to the same sha256
    a = beam_hub.pack(path, str(tmp_path / "a.tar.gz"))
    b = beam_hub.pack(path, str(tmp_path / "b.tar.gz"))
    assert a == b == hashlib.sha256(open(tmp_path / "b.tar.gz", "rb").read()).hexdigest()


def test_modules_that_cannot_be_trained_get_a_clear_error(modules_dir, shards):
    with pytest.raises(FineTuneError, match="no __call__"):
        train(shards, FineTuneConfig(modules_dir["keras"], "x", "y", num_classes=2))
    with pytest.raises(FineTuneError, match="TF1 Hub format"):
        train(shards, FineTuneConfig(modules_dir["tf1"], "x", "y", num_classes=2))
    with pytest.raises(FineTuneError, match="num_classes"):
        train(shards, FineTuneConfig(modules_dir["fruit"], "x", "y"))
    with pytest.raises(FineTuneError, match=r"do not fit the module's input .*3"):
        train(shards, FineTuneConfig(modules_dir["fruit"], "x", "y", num_classes=2))


def test_fine_tune_and_export_in_a_pipeline(base, tmp_path):
    records = [{"x": x, "y": int(y)} for x, y in zip(X[TRAIN], Y[TRAIN])]
    dest = str(tmp_path / "published")

    def build(p):
        _ = (
            p
            | beam.Create(records)
            | beam_hub.FineTuneHubModule(
                base,
                input_key="x",
                label_key="y",
                num_classes=2,
                epochs=30,
                learning_rate=0.02,
                patience=5,
                work_dir=str(tmp_path / "work"),
            )
            | beam_hub.ExportHubModule(dest)
        )

    run_pipeline(build)
    (handle,) = glob.glob(f"{dest}/*.tar.gz")
    assert handle.endswith("/1.tar.gz")
    assert not glob.glob(str(tmp_path / "work" / "data" / "*"))  # the shards (copies of the data) are gone
    assert accuracy(beam_hub.load(handle)(X[TEST])) >= 0.9


def test_a_module_whose_call_takes_no_training_argument_fine_tunes(shards, tmp_path, caplog):
    """Many TF2 exports have __call__(x) only: training= is passed where accepted, with one note."""
    import logging

    import modules

    plain = modules.make_random_relu(str(tmp_path / "plain"), training_arg=False)
    assert beam_hub.load(plain).call_spec.takes_training is False
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        result = train(shards, config(plain, epochs=3))
    assert result.epochs_run >= 1 and result.train_examples == 1800
    notes = [r.getMessage() for r in caplog.records if "takes no training argument" in r.getMessage()]
    assert len(notes) == 1 and plain in notes[0]
    exported = export(result, config(plain, epochs=3), str(tmp_path / "tuned"))
    again = beam_hub.load(exported)
    assert again(X[TEST][:4]).shape == (4, 2)
    layer = beam_hub.KerasLayer(plain, trainable=True)  # the same rule in the Keras layer
    assert layer(tf.constant(X[:3]), training=True).shape == (3, 8)
