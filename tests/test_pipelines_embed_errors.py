"""The embedding job with messy data and a careless user: nothing lost, no silent success, one line."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import REPO
from modules import text_features

NOISE = ("I0000", "W0000", "E0000", "absl::InitializeLog", "oneDNN", "cuInit", "Traceback")


def embed(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`beam-hub embed` as a user runs it (a fresh interpreter, the console script's entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "beam_hub", "embed", "--runner=FnApiRunner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )


def letters(prefix) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(glob.glob(f"{prefix}-errors-*.jsonl"))
        for line in open(f, encoding="utf-8")
    ]


def jsonl_ids(prefix) -> list:
    """The sorted ids of the embedded records a --format jsonl run wrote (not its errors)."""
    return sorted(
        json.loads(line)["id"] for f in glob.glob(f"{prefix}-0*.jsonl") for line in open(f, encoding="utf-8")
    )


def parquet_rows(prefix) -> list[dict]:
    files = sorted(f for f in glob.glob(f"{prefix}-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


@pytest.fixture
def messy_jsonl(tmp_path):
    """1,000 good records, and among them every kind of bad one."""
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": f"sentence number {i}"}).encode() for i in range(1000)]
    bad = {
        101: b'{"id": "m", "text": oops}',  # malformed JSON
        202: b"",  # blank: skipped, not an error
        303: b"   \t ",  # whitespace only: skipped
        404: b'{"id": "no text"}',
        505: b'{"id": "n", "text": 42}',
        606: b'{"id": "u", "text": "caf\xe9"}',  # Latin-1, not UTF-8
        707: b'{"id": "p", "text": "poison"}',  # the module fails on it
        808: b'["not", "an", "object"]',
    }
    for number, line in bad.items():
        lines.insert(number - 1, line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_bad_records_go_to_the_errors_output_and_good_ones_are_all_embedded(
    messy_jsonl, tmp_path, modules_dir
):
    prefix = str(tmp_path / "out" / "emb")
    proc = embed("--input", messy_jsonl, "--output", prefix, "--module", modules_dir["picky_embedder"])
    assert proc.returncode == 1, proc.stderr  # rows were rejected
    assert not [n for n in NOISE if n in proc.stderr], proc.stderr
    assert (
        "embedded 1000 rows" in proc.stdout and f"rejected 6 (errors: {prefix}-errors-*.jsonl)" in proc.stdout
    )
    rows = parquet_rows(prefix)
    assert sorted(r["id"] for r in rows) == list(range(1000))
    assert all(r["embedding"] == text_features(r["text"]) for r in rows)
    got = {d["position"]: d for d in letters(prefix)}
    assert set(got) == {101, 404, 505, 606, 707, 808}
    assert all(d["source"] == messy_jsonl for d in got.values())
    assert got[101]["error"].startswith("malformed JSON: Expecting value: line 1 column 21")
    assert got[101]["record"] == '{"id": "m", "text": oops}'
    assert got[404]["error"] == "the text field 'text' is missing"
    assert got[505]["error"] == "the text field 'text' is not a string but int"
    assert got[606]["error"].startswith("invalid UTF-8 at byte") and "caf\\xe9" in got[606]["record"]
    assert got[707]["error"].startswith("the module failed:") and "cannot embed poison" in got[707]["error"]
    assert got[808]["error"] == "not a JSON object but list"


def test_max_errors_allows_a_known_number_of_rejects(messy_jsonl, tmp_path, modules_dir):
    prefix = str(tmp_path / "emb")
    ok = embed(
        "--input",
        messy_jsonl,
        "--output",
        prefix,
        "--module",
        modules_dir["picky_embedder"],
        "--max-errors",
        "6",
    )
    assert ok.returncode == 0, ok.stderr
    strict = embed(
        "--input",
        messy_jsonl,
        "--output",
        str(tmp_path / "again"),
        "--module",
        modules_dir["picky_embedder"],
        "--max-errors",
        "5",
    )
    assert strict.returncode == 1


def test_records_are_truncated_in_their_dead_letters(tmp_path, modules_dir):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "text": ["x" * 100_000]}) + "\n")
    prefix = str(tmp_path / "emb")
    assert (
        embed("--input", str(src), "--output", prefix, "--module", modules_dir["text_embedder"]).returncode
        == 1
    )
    (letter,) = letters(prefix)
    assert len(letter["record"]) < 5000 and letter["record"].endswith("characters)")


def test_messy_csv(tmp_path, modules_dir):
    src = tmp_path / "in.csv"
    src.write_bytes(
        b"key,body\n"
        b"a,first text\n"
        b"b,too,many,fields\n"
        b'c,"a quoted\nmulti-line text"\n'
        b"d,caf\xe9\n"
        b"\n"
        b"e,last text\n"
    )
    prefix = str(tmp_path / "emb")
    proc = embed(
        "--input",
        str(src),
        "--output",
        prefix,
        "--format",
        "jsonl",
        "--text-field",
        "body",
        "--id-field",
        "key",
        "--module",
        modules_dir["text_embedder"],
    )
    assert proc.returncode == 1, proc.stderr
    good = set(jsonl_ids(prefix))
    assert good == {"a", "c", "e"}
    got = {d["position"]: d["error"] for d in letters(prefix)}
    assert got == {3: "malformed CSV: 4 fields where the header has 2", 6: "invalid UTF-8"}


def test_columnar_inputs_reject_rows_without_text(tmp_path, modules_dir):
    import tensorflow as tf

    src = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"id": [0, 1, 2, 3], "text": ["a b", None, "poison", "d"]}), src, row_group_size=2
    )
    prefix = str(tmp_path / "p")
    proc = embed("--input", str(src), "--output", prefix, "--module", modules_dir["picky_embedder"])
    assert proc.returncode == 1, proc.stderr
    assert sorted(r["id"] for r in parquet_rows(prefix)) == [0, 3]
    got = {d["position"]: (d["source"], d["error"].split(":")[0]) for d in letters(prefix)}
    assert got == {
        1: (str(src), "the text field 'text' is missing or null"),
        2: (str(src), "the module failed"),
    }

    rec = tmp_path / "in.tfrecord"
    with tf.io.TFRecordWriter(str(rec)) as w:
        for i, text in enumerate([b"one", None, b"three", [b"two", b"values"]]):
            feature = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            if text is not None:
                values = text if isinstance(text, list) else [text]
                feature["text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    prefix = str(tmp_path / "t")
    proc = embed(
        "--input", str(rec), "--output", prefix, "--format", "jsonl", "--module", modules_dir["text_embedder"]
    )
    assert proc.returncode == 1, proc.stderr
    assert jsonl_ids(prefix) == [
        0,
        2,
    ]
    assert sorted(d["position"] for d in letters(prefix)) == [1, 3]


def test_a_failed_job_is_one_line_and_leaves_no_staging(tmp_path, messy_jsonl):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    out = tmp_path / "out"
    proc = embed("--input", messy_jsonl, "--output", str(out / "emb"), "--module", str(broken))
    assert proc.returncode in (1, 2), proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("beam-hub: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not glob.glob(str(out / "beam-temp-*")), os.listdir(out)


def test_an_unusable_output_is_one_line(tmp_path, messy_jsonl):
    (tmp_path / "a_file").write_text("x")
    proc = embed("--input", messy_jsonl, "--output", str(tmp_path / "a_file" / "emb"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"beam-hub: error: --output {str(tmp_path / 'a_file' / 'emb')!r}: "
        f"{tmp_path / 'a_file'} is not a directory"
    )
    if not shutil.which("unshare"):
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (
        f"mount -t tmpfs -o ro none {ro} || exit 77; {sys.executable} -m beam_hub embed "
        f"--input {messy_jsonl} --output {ro}/emb"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if proc.returncode != 77:
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert (
            proc.stderr.strip()
            == f"beam-hub: error: --output '{ro}/emb': cannot write in {ro} (Read-only file system)"
        )


def test_an_empty_input_says_zero_rows(tmp_path, modules_dir):
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    proc = embed(
        "--input", str(src), "--output", str(tmp_path / "emb"), "--module", modules_dir["text_embedder"]
    )
    assert proc.returncode == 0, proc.stderr
    assert "embedded 0 rows" in proc.stdout and "rejected 0" in proc.stdout
    assert not glob.glob(str(tmp_path / "emb-errors-*"))  # no errors, no errors file


@pytest.mark.parametrize("typo", [["--batchsize", "64"], ["--precison=bf16"], ["--text_feild", "body"]])
def test_a_flag_nobody_knows_is_an_error(tmp_path, messy_jsonl, typo):
    proc = embed("--input", messy_jsonl, "--output", str(tmp_path / "emb"), *typo)
    assert proc.returncode == 2
    flag = typo[0].split("=")[0]
    assert proc.stderr.strip().startswith(f"beam-hub: error: unknown flag(s) {flag} ")
    assert not glob.glob(str(tmp_path / "emb*"))


def test_an_endless_line_and_a_lying_tfrecord_are_bad_records_not_crashes(tmp_path, modules_dir):
    import struct

    import google_crc32c

    src = tmp_path / "in.jsonl"
    with open(src, "wb") as f:
        f.write(b'{"id": 1, "text": "short"}\n')
        f.write(b'{"id": 2, "text": "' + b"y" * (20 << 20) + b'"}\n')  # 20 MB: over the line cap
        f.write(b'{"id": 3, "text": "after it"}\n')
    prefix = str(tmp_path / "j")
    proc = embed(
        "--input", str(src), "--output", prefix, "--format", "jsonl", "--module", modules_dir["text_embedder"]
    )
    assert proc.returncode == 1, proc.stderr
    assert jsonl_ids(prefix) == [
        1,
        3,
    ]
    (letter,) = letters(prefix)
    assert letter["position"] == 2 and letter["error"].startswith("the line is longer than")

    def masked(data):
        crc = google_crc32c.value(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    import tensorflow as tf

    header = struct.pack("<Q", 1 << 40)
    lie = header + struct.pack("<I", masked(header)) + b"tiny"  # claims a terabyte
    (tmp_path / "b_lie.tfrecord").write_bytes(lie)
    with tf.io.TFRecordWriter(str(tmp_path / "a_good.tfrecord")) as w:
        w.write(
            tf.train.Example(
                features=tf.train.Features(
                    feature={"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"fine"]))}
                )
            ).SerializeToString()
        )
    prefix = str(tmp_path / "t")
    proc = embed(
        "--input",
        str(tmp_path / "*.tfrecord"),
        "--output",
        prefix,
        "--format",
        "jsonl",
        "--module",
        modules_dir["text_embedder"],
    )
    assert proc.returncode == 1, proc.stderr
    (letter,) = letters(prefix)
    assert letter["source"] == str(tmp_path / "b_lie.tfrecord")
    assert letter["error"] == f"corrupt TFRecord file: record 0 claims {1 << 40} bytes (more than 268435456)"
    # when the file the schema is read from is the corrupt one: one line naming it
    proc = embed("--input", str(tmp_path / "b_lie.tfrecord"), "--output", str(tmp_path / "u"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"beam-hub: error: {tmp_path / 'b_lie.tfrecord'}: corrupt TFRecord file "
        f"(record 0 claims {1 << 40} bytes (more than 268435456))"
    )


def test_parquet_files_that_disagree_with_the_first_are_set_aside_not_fatal(tmp_path, modules_dir):
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["x"], "text": ["c"]}), tmp_path / "b.parquet")  # id is text here
    pq.write_table(pa.table({"id": [3], "body": ["no text column"]}), tmp_path / "c.parquet")
    pq.write_table(pa.table({"id": [4], "text": ["d"], "extra": [1.5]}), tmp_path / "d.parquet")
    prefix = str(tmp_path / "emb")
    proc = embed(
        "--input", str(tmp_path / "*.parquet"), "--output", prefix, "--module", modules_dir["text_embedder"]
    )
    assert proc.returncode == 1, proc.stderr
    rows = parquet_rows(prefix)
    assert sorted(r["id"] for r in rows) == [1, 2, 4] and set(rows[0]) == {"id", "text", "embedding"}
    got = {(os.path.basename(d["source"]), d["position"]): d["error"] for d in letters(prefix)}
    assert got[("c.parquet", 0)] == "the text field 'text' is missing or null"
    assert got[("b.parquet", 0)].startswith("does not fit the output's Parquet schema")


def test_a_byte_order_mark_is_not_a_bad_record(tmp_path, modules_dir):
    src = tmp_path / "excel.csv"
    src.write_bytes(b"\xef\xbb\xbftext,key\r\nfirst,a\r\nsecond,b\r\n")  # the text column first
    prefix = str(tmp_path / "emb")
    proc = embed(
        "--input",
        str(src),
        "--output",
        prefix,
        "--format",
        "jsonl",
        "--id-field",
        "key",
        "--module",
        modules_dir["text_embedder"],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert jsonl_ids(prefix) == [
        "a",
        "b",
    ]
