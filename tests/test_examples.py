"""Every script in examples/ runs as a user would run it (its own process, the sample data, a
fresh work directory) and prints what its docstring promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

EXAMPLES = os.path.join(REPO, "examples")


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_example_is_tested_here():
    tested = {"embed_jsonl.py", "beam_dict_inputs.py", "publish_serve_latest.py", "dataflow_dry_run.py"}
    tested |= {"keras_hub_layer.py"}
    assert {f for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested


def test_embed_jsonl(tmp_path, minilm_cache):
    out = run_example("embed_jsonl.py", str(tmp_path), env={"TFHUB_CACHE_DIR": minilm_cache})
    assert "embedded 200 sentences (384 dimensions)" in out
    assert "closest pair (" in out
    rows = [json.loads(line) for line in open(tmp_path / "embeddings.jsonl", encoding="utf-8")]
    assert len(rows) == 200 and {len(r["embedding"]) for r in rows} == {384}


def test_beam_dict_inputs(tmp_path):
    out = run_example("beam_dict_inputs.py", str(tmp_path), "--runner", "FnApiRunner")
    assert sorted(out.strip().splitlines()) == [
        "basket-1: cats=7 dogs=2",
        "basket-2: cats=2 dogs=-2",
        "failed: basket-3: InputError",
    ]


def test_without_a_directory_an_example_leaves_nothing_behind(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = run_example("beam_dict_inputs.py", "--runner", "FnApiRunner", env={"TMPDIR": str(scratch)})
    assert "basket-1: cats=7 dogs=2" in out
    assert not [p for p in scratch.iterdir() if p.name.startswith("beam-hub-example-")]


def test_publish_serve_latest(tmp_path):
    out = run_example("publish_serve_latest.py", str(tmp_path), "--runner", "FnApiRunner")
    assert "published: ['1.tar.gz', '1.tar.gz.sha256', '2.tar.gz', '2.tar.gz.sha256']" in out
    latest = next(line for line in out.splitlines() if "@latest is " in line)
    champion = next(line for line in out.splitlines() if "@champion is " in line)
    assert latest.split(" is ")[1].startswith("http://127.0.0.1:") and "/acme/quadrants/2:" in latest
    assert "/acme/quadrants/1:" in champion
    for line in (latest, champion):  # both versions learned the task: same signs -> high, else low
        same, different = (float(p) for p in line.rsplit("= ", 1)[1].split(", "))
        assert same > 0.5 > different


def test_dataflow_dry_run():
    out = run_example("dataflow_dry_run.py")
    assert "nothing was sent" in out
    for step in (
        "Match",
        "Read",
        "Embed",
        "Write",
        "WriteErrors",
        "Spread",
    ):  # Spread: distributed runners only
        assert f"   {step}\n" in out


def test_keras_hub_layer(tmp_path):
    out = run_example("keras_hub_layer.py", str(tmp_path))
    accuracy = float(out.split("accuracy after training: ")[1].split()[0])
    assert accuracy > 0.8
    assert "reloaded model gives the same predictions: True" in out
    assert (tmp_path / "model.keras").is_file()


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")))
def test_examples_say_how_to_run_them_and_the_docs_show_them(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        assert f"python examples/{name}" in f.read()
    pages = [
        os.path.join(REPO, "docs", p) for p in os.listdir(os.path.join(REPO, "docs")) if p.endswith(".md")
    ]
    assert any(f'--8<-- "examples/{name}"' in open(p, encoding="utf-8").read() for p in pages)
