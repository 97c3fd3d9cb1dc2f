"""Streaming pipelines that follow a moving module: PeriodicImpulse on Beam's in-process runner
(it emits in real time there, bundle by bundle), versions published mid-run from a thread."""

from __future__ import annotations

import json
import os
import threading
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.utils.timestamp import Timestamp

import beam_hub
from helpers import counters, run_pipeline

X = np.array([1.0, 2.0, 3.0], np.float32)  # one_input: 14.0; one_input_x2: 28.0
INTERVAL, POLL = 0.25, 0.5


def _keep(path: str):
    """Append each element (numpy made plain) as a line to ``path`` (in the test's tmp_path): the
    DoFn is pickled, so what it sees of this module is a copy; a file is the same for every copy."""

    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if hasattr(value, "to_pylist"):
            return {name: value.column(name).to_pylist() for name in value.column_names}
        return np.asarray(value).tolist() if isinstance(value, np.ndarray) or np.isscalar(value) else value

    def keep(element):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(plain(element)) + "\n")

    return keep


def _seen(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _ticks(p: beam.Pipeline, start: float, seconds: float) -> beam.PCollection:
    return (
        p
        | PeriodicImpulse(
            start_timestamp=Timestamp.of(start),
            stop_timestamp=Timestamp.of(start + seconds),
            fire_interval=INTERVAL,
        )
        | "Keyed" >> beam.Map(lambda ts: (round(float(ts) - start, 2), X))
    )


def _at(start: float, steps: list[tuple[float, object]]) -> threading.Thread:
    """Run each step at its second after ``start`` on a thread."""

    def go():
        for second, step in steps:
            time.sleep(max(0.0, start + second - time.time()))
            step()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def _run(build) -> object:
    return run_pipeline(build)


def _by_time(path: str) -> list[tuple[float, float, str]]:
    """(tick second, output value, version) in tick order."""
    return sorted(
        (key, float(np.asarray(out).reshape(-1)[0]), version) for key, (out, version) in _seen(path)
    )


def _follow(handle: str, path: str, start: float, seconds: float, **extra: object) -> tuple[object, list]:
    """Run ticks for ``seconds`` through ApplyHubModule(handle, follow=True); (result, rows by tick),
    after checking that no tick was lost or computed twice."""

    def build(p):
        _ = (
            _ticks(p, start, seconds)
            | beam_hub.ApplyHubModule(
                handle,
                keyed=True,
                follow=True,
                poll_seconds=POLL,
                with_version=True,
                max_batch_size=4,
                **extra,
            )
            | beam.Map(_keep(path))
        )

    result = _run(build)
    rows = _by_time(path)
    assert len(rows) == int(seconds / INTERVAL)
    assert len({key for key, _, _ in rows}) == len(rows)
    return result, rows


def _runs(rows: list) -> list[str]:
    """The versions in the order they computed, each run of ticks once."""
    return [version for i, (_, _, version) in enumerate(rows) if i == 0 or rows[i - 1][2] != version]


def test_follows_latest_adopts_good_versions_and_rejects_a_changed_signature(modules_dir, tmp_path, caplog):
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    seconds = 7.0
    start = time.time() + 1.0
    thread = _at(
        start,
        [
            (1.5, lambda: beam_hub.publish(modules_dir["one_input_x2"], dest)),  # 2: adopted
            (3.0, lambda: beam_hub.publish(modules_dir["text_embedder"], dest)),  # 3: strings in: rejected
            (4.5, lambda: beam_hub.publish(modules_dir["one_input"], dest)),  # 4: adopted
        ],
    )

    result, rows = _follow(f"{dest}@latest", str(tmp_path / "latest.jsonl"), start, seconds)
    thread.join()
    versions = [version for _, _, version in rows]
    order = list(dict.fromkeys(versions))  # in the order first used
    assert order == [f"{dest}/1.tar.gz", f"{dest}/2.tar.gz", f"{dest}/4.tar.gz"]  # never 3, never back
    assert versions == sorted(versions, key=order.index)
    assert {(value, version) for _, value, version in rows} == {
        (14.0, f"{dest}/1.tar.gz"),
        (28.0, f"{dest}/2.tar.gz"),
        (14.0, f"{dest}/4.tar.gz"),
    }
    assert "its signature changed: inputs: ['x'] became ['sentences']" in caplog.text
    found = counters(result)
    assert found["version_swaps"] == 2 and found["version_rejected"] == 1
    assert found[f"inference_elements@{dest}/2.tar.gz"] == versions.count(f"{dest}/2.tar.gz")


def test_follows_an_alias_back_and_past_a_corrupt_version(modules_dir, tmp_path):
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    beam_hub.set_alias(dest, "champion", 1)

    def corrupt_3():
        with open(os.path.join(dest, "3.tar.gz"), "wb") as f:
            f.write(os.urandom(2048))
        beam_hub.set_alias(dest, "champion", 3)

    seconds = 6.0
    start = time.time() + 1.0
    thread = _at(
        start,
        [
            (1.5, lambda: beam_hub.set_alias(dest, "champion", 2)),
            (3.0, corrupt_3),  # its archive is corrupt: rejected, 2 stays
            (4.5, lambda: beam_hub.set_alias(dest, "champion", 1)),  # the rollback
        ],
    )

    result, rows = _follow(f"{dest}@champion", str(tmp_path / "champion.jsonl"), start, seconds)
    thread.join()
    assert _runs(rows) == [f"{dest}/1.tar.gz", f"{dest}/2.tar.gz", f"{dest}/1.tar.gz"]
    assert counters(result)["version_rejected"] == 1


def test_with_version_says_the_pinned_version_in_a_batch_job(modules_dir, tmp_path):
    dest = str(tmp_path / "models")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)

    def build(p):
        _ = (
            p
            | beam.Create([X, X])
            | beam_hub.ApplyHubModule(f"{dest}@latest", with_version=True)
            | beam.Map(_keep(str(tmp_path / "pinned.jsonl")))
        )

    _run(build)
    assert [(out[0], version) for out, version in _seen(str(tmp_path / "pinned.jsonl"))] == [
        (28.0, f"{dest}/2.tar.gz")
    ] * 2


def test_columnar_batches_get_a_version_column(modules_dir, tmp_path):
    pa = pytest.importorskip("pyarrow")
    dest = str(tmp_path / "models")
    beam_hub.publish(modules_dir["one_input"], dest)
    table = pa.table({"x": pa.array([X.tolist()] * 3, pa.list_(pa.float32()))})

    def build(p):
        _ = (
            p
            | beam.Create([table])
            | beam_hub.ApplyHubModule(f"{dest}@latest", columns="x", follow=True, with_version=True)
            | beam.Map(_keep(str(tmp_path / "columnar.jsonl")))
        )

    _run(build)
    (out,) = _seen(str(tmp_path / "columnar.jsonl"))
    assert out["output_version"] == [f"{dest}/1.tar.gz"] * 3
    assert out["output"] == [[14.0]] * 3


def test_large_model_follows_in_the_machines_model_process(modules_dir, tmp_path):
    """large_model=True: the follower and its module live in the model process; each batch is one
    proxied call that returns the outputs and the version that computed them."""
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    seconds = 4.0
    start = time.time() + 1.0
    thread = _at(start, [(1.5, lambda: beam_hub.publish(modules_dir["one_input_x2"], dest))])

    _, rows = _follow(f"{dest}@latest", str(tmp_path / "large.jsonl"), start, seconds, large_model=True)
    thread.join()
    assert _runs(rows) == [f"{dest}/1.tar.gz", f"{dest}/2.tar.gz"]
    assert {(value, version) for _, value, version in rows} == {
        (14.0, f"{dest}/1.tar.gz"),
        (28.0, f"{dest}/2.tar.gz"),
    }


def test_watch_versions_emits_at_start_and_when_the_name_moves(modules_dir, tmp_path):
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.set_alias(dest, "champion", 1)
    seconds = 5.0
    start = time.time() + 1.0
    thread = _at(
        start,
        [
            (1.5, lambda: beam_hub.publish(modules_dir["one_input_x2"], dest)),  # not the champion
            (2.5, lambda: beam_hub.set_alias(dest, "champion", 2)),
            (3.5, lambda: beam_hub.set_alias(dest, "champion", 1)),
        ],
    )

    def build(p):
        _ = (
            p
            | beam_hub.WatchVersions(f"{dest}@champion", poll_seconds=POLL, stop_timestamp=start + seconds)
            | beam.Map(lambda m: (m.model_id, m.model_name))
            | beam.Map(_keep(str(tmp_path / "watch.jsonl")))
        )

    _run(build)
    thread.join()
    name = f"{dest}@champion"
    assert [tuple(m) for m in _seen(str(tmp_path / "watch.jsonl"))] == [
        (f"{dest}/1.tar.gz", name),
        (f"{dest}/2.tar.gz", name),
        (f"{dest}/1.tar.gz", name),
    ]
