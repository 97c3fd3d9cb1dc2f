"""The TFRecord output's records: what TensorFlow's own tf.train.Example serialization holds,
read back by TensorFlow's parsers, for every id the job can meet and rows of any width."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.tfrecord import TFRecordBlocks, encode, frame

tf = pytest.importorskip("tensorflow")


def _tf_example(ident, vector) -> bytes:
    """What the job wrote with TensorFlow's protobufs (beam_hub.examples.serialize) before."""
    from beam_hub.examples import serialize

    ident = ident if isinstance(ident, (int, bytes)) and not isinstance(ident, bool) else str(ident)
    return serialize({"id": ident, "embedding": np.asarray(vector, np.float32)})


IDS = [0, 7, -1, -(2**63), 2**63 - 1, 300, "k1", "naïve ☃", b"\x00raw", None, 1.5, True]


@pytest.mark.parametrize("width", [1, 4, 64, 200])
def test_fixed_width_rows_parse_as_tensorflow_writes_them(width):
    rng = np.random.default_rng(width)
    vectors = rng.standard_normal((len(IDS), width)).astype(np.float32)
    vectors[0, 0] = np.float32("nan") if width > 1 else vectors[0, 0]
    column = pa.array(vectors.tolist(), pa.list_(pa.float32()))
    records = list(encode(IDS, column))
    assert len(records) == len(IDS)
    for record, ident, vector in zip(records, IDS, vectors, strict=True):
        got, want = (
            tf.train.Example.FromString(record),
            tf.train.Example.FromString(_tf_example(ident, vector)),
        )
        # NaN != NaN in protobuf equality: compare the float bytes, then the rest
        assert np.asarray(got.features.feature["embedding"].float_list.value, np.float32).tobytes() == (
            vector.tobytes()
        )
        assert got.features.feature["id"] == want.features.feature["id"]


def test_rows_of_different_widths_empty_and_sliced():
    column = pa.array([[1.0, 2.0], [], [3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float32())).slice(1)
    ids = ["b", "c", "d"]
    records = list(encode(ids, column))
    assert [tf.train.Example.FromString(r) for r in records] == [
        tf.train.Example.FromString(_tf_example(i, v)) for i, v in zip(ids, column.to_pylist(), strict=True)
    ]


def test_tensorflow_parses_a_written_shard(tmp_path):
    """The sink frames records as TFRecordDataset reads them (length, CRCs), a block per element."""
    import apache_beam as beam

    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    blocks = [
        list(encode([0, 1, 2], pa.array(vectors[:3].tolist()))),
        list(encode([3, 4, 5], pa.array(vectors[3:].tolist()))),
    ]
    prefix = str(tmp_path / "out")
    with beam.Pipeline("FnApiRunner") as p:
        _ = p | beam.Create(blocks) | beam.io.Write(TFRecordBlocks(prefix))
    shards = sorted(tmp_path.glob("out-*.tfrecord"))
    assert [s.name for s in shards] == ["out-00000-of-00001.tfrecord"]
    spec = {"id": tf.io.FixedLenFeature([], tf.int64), "embedding": tf.io.FixedLenFeature([2], tf.float32)}
    got = {
        int(ex["id"]): ex["embedding"].numpy().tolist()
        for ex in tf.data.TFRecordDataset([str(s) for s in shards]).map(
            lambda r: tf.io.parse_single_example(r, spec)
        )
    }
    assert got == {i: vectors[i].tolist() for i in range(6)}


@pytest.mark.parametrize("record", [b"", b"x", bytes(range(256)) * 40])
def test_framing_is_the_bytes_beam_and_tensorflow_write(tmp_path, record):
    import io

    from apache_beam.io.tfrecordio import _TFRecordUtil

    beams = io.BytesIO()
    _TFRecordUtil.write_record(beams, record)
    assert frame(record) == beams.getvalue()
    path = str(tmp_path / "one.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(record)
    with open(path, "rb") as f:
        assert f.read() == frame(record)
