import csv
import glob
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import REPO
from modules import text_features
from pipelines import embed

TEXTS = ["hello world", "", "Crème brûlée", "東京 は 日本", "x" * 300, "three little words"]


def run(*args: str) -> dict:
    return embed.run(["--runner=FnApiRunner", *args])


def read_parquet(prefix: str) -> pa.Table:
    files = sorted(glob.glob(prefix + "*.parquet"))
    assert files, f"no output at {prefix}"
    return pa.concat_tables([pq.read_table(f) for f in files])


@pytest.fixture
def jsonl(tmp_path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": t, "lang": "xx", "n": i}, ensure_ascii=False) + "\n"
            for i, t in enumerate(TEXTS)
        ),
        encoding="utf-8",
    )
    return str(path)


def test_jsonl_to_parquet_keeps_fields(jsonl, tmp_path, modules_dir):
    summary = run(
        "--input", jsonl, "--output", str(tmp_path / "out" / "emb"), "--module", modules_dir["text_embedder"]
    )
    table = read_parquet(str(tmp_path / "out" / "emb"))
    assert summary["rows"] == len(TEXTS) and summary["outputs"] == sorted(
        glob.glob(str(tmp_path / "out" / "emb*"))
    )
    assert table.schema.names == ["id", "text", "lang", "n", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    rows = {r["id"]: r for r in table.to_pylist()}
    for i, t in enumerate(TEXTS):
        assert rows[f"r{i}"]["lang"] == "xx" and rows[f"r{i}"]["n"] == i
        assert rows[f"r{i}"]["embedding"] == text_features(t)


def test_parquet_output_stores_embeddings_plain(jsonl, tmp_path, modules_dir):
    """The embedding column is written without dictionary or statistics (pyarrow's defaults
    made writing 5x slower and the file larger); the other columns keep their dictionaries."""
    run("--input", jsonl, "--output", str(tmp_path / "emb"), "--module", modules_dir["text_embedder"])
    (path,) = glob.glob(str(tmp_path / "emb-*.parquet"))
    meta = pq.ParquetFile(path).metadata
    columns = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(5)}
    embedding = columns["embedding.list.element"]
    assert not embedding.has_dictionary_page and not embedding.is_stats_set
    assert columns["text"].has_dictionary_page and columns["text"].is_stats_set
    assert pq.read_table(path).column("embedding").to_pylist()[0] == text_features(TEXTS[0])


def test_text_lines_to_jsonl(tmp_path, modules_dir):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    run(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "emb"),
        "--format",
        "jsonl",
        "--module",
        modules_dir["text_embedder"],
    )
    lines = [
        json.loads(line)
        for f in glob.glob(str(tmp_path / "emb*.jsonl"))
        for line in open(f, encoding="utf-8")
    ]
    # line numbers; the blank line (TEXTS[1]) is skipped
    assert sorted(r["id"] for r in lines) == [i + 1 for i, t in enumerate(TEXTS) if t.strip()]
    assert all(set(r) == {"id", "embedding"} for r in lines)
    assert {r["id"]: r["embedding"] for r in lines}[3] == text_features(TEXTS[2])


def test_jsonl_output_of_many_tables_has_one_line_per_row(tmp_path, modules_dir):
    """JSONL output is written a table at a time: every row once, no blank line between tables,
    and a record whose id does not fit the first records' type keeps the id from its line."""
    src = tmp_path / "in.jsonl"
    n = 20_000  # three sort windows
    with open(src, "w", encoding="utf-8") as f:
        for i in range(n):
            ident = i if i != 15_000 else "fifteen thousand"
            f.write(json.dumps({"id": ident, "text": f"row {i} " + "w " * (i % 5)}) + "\n")
    run(
        "--input", str(src), "--output", str(tmp_path / "emb"), "--format", "jsonl",
        "--module", modules_dir["text_embedder"],
    )  # fmt: skip
    (path,) = glob.glob(str(tmp_path / "emb-*.jsonl"))
    text = open(path, encoding="utf-8").read()
    assert text.endswith("}\n") and "\n\n" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    by_id = {r["id"]: r["embedding"] for r in lines}
    assert len(lines) == n and set(by_id) == {*range(n)} - {15_000} | {"fifteen thousand"}
    assert by_id["fifteen thousand"] == text_features("row 15000 ")
    assert by_id[19_999] == text_features("row 19999 " + "w " * 4)


def test_csv_to_tfrecord(tmp_path, modules_dir):
    import tensorflow as tf

    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "body"])
        w.writerows([[f"k{i}", t] for i, t in enumerate(TEXTS)])
    run(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "emb"),
        "--format",
        "tfrecord",
        "--text-field",
        "body",
        "--id-field",
        "key",
        "--module",
        modules_dir["text_embedder"],
    )
    spec = {"id": tf.io.FixedLenFeature([], tf.string), "embedding": tf.io.FixedLenFeature([4], tf.float32)}
    got = {}
    for record in tf.data.TFRecordDataset(glob.glob(str(tmp_path / "emb*.tfrecord"))):
        ex = tf.io.parse_single_example(record, spec)
        got[ex["id"].numpy().decode()] = ex["embedding"].numpy().tolist()
    assert got == {f"k{i}": text_features(t) for i, t in enumerate(TEXTS)}


def test_parquet_columnar_path(tmp_path, modules_dir):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"doc": list(range(len(TEXTS))), "text": TEXTS}), src, row_group_size=4)
    run(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "emb"),
        "--module",
        modules_dir["text_embedder"],
        "--batch-size",
        "2",
    )
    table = read_parquet(str(tmp_path / "emb"))
    assert table.schema.names == ["doc", "text", "embedding"]
    assert {r["doc"]: r["embedding"] for r in table.to_pylist()} == {
        i: text_features(t) for i, t in enumerate(TEXTS)
    }


def test_bad_input_gets_clear_errors(jsonl, tmp_path, modules_dir):
    summary = run(
        "--input",
        jsonl,
        "--output",
        str(tmp_path / "o"),
        "--text-field",
        "body",
        "--module",
        modules_dir["text_embedder"],
    )
    assert summary["rows"] == 0 and summary["rejected"] == len(TEXTS)  # every record lacks the field
    letters = [json.loads(line) for f in glob.glob(str(tmp_path / "o-errors-*.jsonl")) for line in open(f)]
    assert {d["error"] for d in letters} == {"the text field 'body' is missing"}
    with pytest.raises(ValueError, match="--input-format"):
        run("--input", str(tmp_path / "x.dat"), "--output", str(tmp_path / "o"))
    with pytest.raises(ValueError, match="needs --output"):
        run("--input", jsonl)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        run("--input", str(tmp_path / "none*.jsonl"), "--output", str(tmp_path / "o"))


def test_beam_hub_embed_with_the_builtin_module(minilm_cache, tmp_path):
    """The README's main command, end to end, on the shipped sample."""
    import beam_hub

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "beam_hub",
            "--cache-dir",
            minilm_cache,
            "embed",
            "--input",
            "examples/sentences.jsonl",
            "--output",
            str(tmp_path / "emb"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "embedded 200 rows" in proc.stdout and f"output: {tmp_path}/emb-00000-of-00001.parquet" in proc.stdout
    )
    table = read_parquet(str(tmp_path / "emb"))
    assert table.num_rows == 200 and table.schema.names == ["id", "text", "lang", "embedding"]
    module = beam_hub.load("builtin://all-MiniLM-L6-v2", cache_dir=minilm_cache)
    rows = table.to_pylist()[:20]
    direct = module([r["text"] for r in rows])
    got = np.array([r["embedding"] for r in rows], np.float32)
    np.testing.assert_allclose(got, direct, atol=1e-5)


def test_tfrecord_examples_columnar_path(tmp_path, modules_dir):
    import tensorflow as tf

    src = tmp_path / "in.tfrecord"
    with tf.io.TFRecordWriter(str(src)) as w:
        for i, t in enumerate(TEXTS):
            w.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[100 + i])),
                            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()])),
                            "other": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.0])),
                        }
                    )
                ).SerializeToString()
            )
    run("--input", str(src), "--output", str(tmp_path / "emb"), "--module", modules_dir["text_embedder"])
    table = read_parquet(str(tmp_path / "emb"))
    assert table.schema.names == ["id", "text", "embedding"]
    assert {r["id"]: r["embedding"] for r in table.to_pylist()} == {
        100 + i: text_features(t) for i, t in enumerate(TEXTS)
    }
    run(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "j"),
        "--format",
        "jsonl",
        "--module",
        modules_dir["text_embedder"],
    )
    lines = [
        json.loads(line) for f in glob.glob(str(tmp_path / "j*.jsonl")) for line in open(f, encoding="utf-8")
    ]
    assert sorted(r["id"] for r in lines) == [100 + i for i in range(len(TEXTS))]


def test_json_vectors_are_the_numbers_json_wrote():
    """Embeddings are written by orjson from one matrix: the same numbers (float32 widened to
    float64) as json.dumps of the row's list; rows of other lengths or nulls take the slow path."""
    from pipelines.embed_io import _json_vectors

    values = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    values[0, :3] = [1e-5, -0.0, 3.4e38]
    column = pa.chunked_array(
        [
            pa.array(values[:20].tolist(), pa.list_(pa.float32())),
            pa.array(values[20:].tolist(), pa.list_(pa.float32())),
        ]
    )
    assert [json.loads(v) for v in _json_vectors(column)] == [
        json.loads(json.dumps(row)) for row in column.to_pylist()
    ]
    ragged = pa.chunked_array([pa.array([[1.5, 2.25], [0.1], None], pa.list_(pa.float32()))])
    assert [json.loads(v) for v in _json_vectors(ragged)] == [
        [1.5, 2.25],
        [pa.scalar(0.1, pa.float32()).as_py()],
        None,
    ]
