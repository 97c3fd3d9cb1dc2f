import json
import os
import subprocess
import sys

import numpy as np
import pytest

import beam_hub
from helpers import REPO
from pipelines import reexport

RNG = np.random.default_rng(1)
X = RNG.uniform(-1, 1, (1200, 2)).astype(np.float32)
Y = (X[:, 0] * X[:, 1] > 0).astype(int)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import modules

    return modules.make_random_relu(str(tmp_path_factory.mktemp("base") / "m"))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"x": x.tolist(), "label": int(y)}) + "\n" for x, y in zip(X, Y)))
    return str(path)


def args(base, data, dest, *extra):
    return [
        "--base",
        base,
        "--train",
        data,
        "--dest",
        dest,
        "--input-field",
        "x",
        "--label-field",
        "label",
        "--num-classes",
        "2",
        "--epochs",
        "15",
        "--learning-rate",
        "0.02",
        *extra,
    ]


def test_publishes_the_next_version_and_is_idempotent(base, data, tmp_path):
    dest = str(tmp_path / "models")
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.reexport", *args(base, data, dest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.strip().splitlines()[-1]
    assert first == f"{dest}/1.tar.gz"
    probabilities = beam_hub.load(first)(X[:200])
    assert ((probabilities.argmax(1) == Y[:200]).mean()) > 0.8
    # unchanged base, data and parameters: nothing new, the same handle
    assert reexport.run(args(base, data, dest)) == first
    assert sorted(os.listdir(dest)) == ["1.tar.gz", "1.tar.gz.fingerprint", "1.tar.gz.sha256"]
    # changed parameters: the next version
    assert reexport.run(args(base, data, dest, "--seed", "3")) == f"{dest}/2.tar.gz"


def test_a_failed_run_leaves_published_versions_untouched(base, data, tmp_path):
    dest = str(tmp_path / "models")
    reexport.run(args(base, data, dest))
    before = {f: open(os.path.join(dest, f), "rb").read() for f in os.listdir(dest)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"x": [1.0, 2.0, 3.0], "label": 1}) + "\n")  # wrong input width
    with pytest.raises(Exception, match="do not fit the module's input"):
        reexport.run(args(base, str(bad), dest))
    assert {f: open(os.path.join(dest, f), "rb").read() for f in os.listdir(dest)} == before


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_other_training_formats(base, tmp_path, fmt):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    from beam_hub.examples import serialize

    path = str(tmp_path / f"train.{fmt}")
    if fmt == "parquet":
        pq.write_table(pa.table({"x": [x.tolist() for x in X[:300]], "label": Y[:300].tolist()}), path)
    else:
        with tf.io.TFRecordWriter(path) as w:
            for x, y in zip(X[:300], Y[:300]):
                w.write(serialize({"x": x, "label": int(y)}))
    dest = str(tmp_path / "models")
    handle = reexport.run(
        [
            "--base",
            base,
            "--train",
            path,
            "--dest",
            dest,
            "--input-field",
            "x",
            "--label-field",
            "label",
            "--num-classes",
            "2",
            "--epochs",
            "1",
        ]
    )
    assert handle == f"{dest}/1.tar.gz"
    assert beam_hub.load(handle)(X[:3]).shape == (3, 2)
