import json
import os
import subprocess
import sys

import numpy as np
import pytest

import beam_hub
from beam_hub import layout
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


def reexport_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.reexport", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "label, why",
    [
        (0.9, "label 0.9 is not a whole number; classes are integers in [0, 2)"),
        (2, "label 2 is outside the classes [0, 2)"),
        ("yes", "label 'yes' is not a number"),
    ],
)
def test_a_bad_label_is_refused_in_one_line_naming_the_record(base, data, tmp_path, label, why):
    bad = tmp_path / "bad.jsonl"
    lines = open(data).read().splitlines()
    lines[41] = json.dumps({"x": [0.5, 0.5], "label": label})
    bad.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "models"
    proc = reexport_cli(*args(base, str(bad), str(dest), "--epochs", "1"), env={"TMPDIR": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"reexport: error: {bad} line 42: {why}; nothing was published."
    assert not dest.exists() or os.listdir(dest) == []
    assert not [n for n in os.listdir(tmp_path) if n.startswith("beam-hub-reexport-")]


def test_unreadable_training_records_are_refused_naming_them(base, data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(open(data).read() + '{"x": [1, 2], "label": \n')
    with pytest.raises(beam_hub.errors.FineTuneError, match=rf"{bad} line 1201: malformed JSON"):
        reexport.run(args(base, str(bad), str(tmp_path / "models"), "--epochs", "1"))


def test_a_run_leaves_no_work_directory_behind(base, data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    reexport.run(args(base, data, str(tmp_path / "models"), "--epochs", "1", "--work-dir", str(work)))
    assert os.listdir(work) == []  # no TFRecord copy of the data, no exported module
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"x": [1.0, 2.0, 3.0], "label": 1}) + "\n")  # fails in training
    with pytest.raises(Exception, match="do not fit the module's input"):
        reexport.run(args(base, str(bad), str(tmp_path / "models"), "--work-dir", str(work)))
    assert os.listdir(work) == []


def test_the_fingerprint_comes_from_file_metadata_not_bytes(base, data, tmp_path):
    parsed, _ = reexport.parse_args(args(base, data, str(tmp_path / "models")))
    first = reexport.fingerprint(parsed)
    stat = os.stat(data)
    content = open(data, "rb").read()
    with open(data, "r+b") as f:  # same size, other bytes, the same mtime: the store's metadata says "same"
        f.write(content[:10].swapcase())
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert reexport.fingerprint(parsed) == first  # so no byte was read
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert reexport.fingerprint(parsed) != first


def test_gcs_training_files_are_fingerprinted_by_their_checksum(base, data, gcs, bucket, tmp_path):
    gcs.put(data, f"{bucket[5:]}/train/a.jsonl")
    parsed, _ = reexport.parse_args(args(base, f"{bucket}/train/*.jsonl", str(tmp_path / "models")))
    info = gcs.info(f"{bucket[5:]}/train/a.jsonl")
    assert info.get("crc32c") or info.get("md5Hash")
    assert reexport._file_token(f"{bucket}/train/a.jsonl").startswith(f"size={info['size']};")
    first = reexport.fingerprint(parsed)
    assert reexport.fingerprint(parsed) == first
    gcs.pipe_file(f"{bucket[5:]}/train/a.jsonl", open(data, "rb").read().replace(b"label", b"LABEL"))
    assert reexport.fingerprint(parsed) != first


def test_the_base_may_be_an_alias_pinned_for_the_whole_run(base, data, tmp_path):
    bases = str(tmp_path / "bases")
    beam_hub.publish(base, bases)
    handle = reexport.run(args(f"{bases}@latest", data, str(tmp_path / "models"), "--epochs", "1"))
    readme = beam_hub.resolve(handle) + "/README.md"
    assert f"# Fine-tuned from {bases}/1.tar.gz" in open(readme).read()


def test_a_nightly_run_can_publish_without_promoting(base, data, tmp_path):
    """--set-alias candidate: DEST@candidate follows each run's version; DEST@champion stays
    where a person put it; an unchanged rerun leaves the alias as it was (no new record)."""
    dest = str(tmp_path / "models")
    first = reexport.run(args(base, data, dest, "--epochs", "1", "--set-alias", "candidate"))
    beam_hub.set_alias(dest, "champion", 1)
    second = reexport.run(args(base, data, dest, "--epochs", "1", "--seed", "5", "--set-alias", "candidate"))
    assert (first, second) == (f"{dest}/1.tar.gz", f"{dest}/2.tar.gz")
    aliases = beam_hub.list_aliases(dest)
    assert {n: a.version for n, a in aliases.items()} == {"candidate": "2", "champion": "1"}
    assert (
        reexport.run(args(base, data, dest, "--epochs", "1", "--seed", "5", "--set-alias", "candidate"))
        == second
    )
    assert beam_hub.get_alias(dest, "candidate").changes == 2
    # a bad name is refused before any training, in one line
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.reexport", *args(base, data, dest, "--set-alias", "latest")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "'latest' is not an alias you can set" in proc.stderr
    assert layout.versions(dest) == [1, 2]
