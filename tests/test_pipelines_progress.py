"""The embedding job's progress line and closing summary (what a user watching the job reads)."""

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from helpers import REPO
from pipelines import embed
from pipelines.progress import JobProgress


def test_log_lines_give_rows_rate_share_eta_and_rejected(caplog):
    progress = JobProgress()
    progress.start(1000, bar=False, every_s=0)
    progress.began()
    time.sleep(0.02)  # some time for a rate (not a timing assertion)
    with caplog.at_level(logging.INFO, logger="beam_hub.embed"):
        progress.read(500, 100)  # half the bytes held 100 rows: 200 expected
        progress.rows(40)
        progress.rejected(10)
    progress.close()
    last = caplog.records[-1].getMessage()
    assert last.startswith("embedded 40 rows (") and "rows/s)" in last
    assert "about 25% of the input" in last and "left" in last and last.endswith("; 10 rejected")
    assert progress.expected_rows() == 200


def test_expected_rows_are_exact_once_everything_is_read():
    progress = JobProgress()
    progress.start(1000, bar=False, every_s=3600)
    progress.read(300, 90)
    assert progress.expected_rows() == 300
    progress.read(700, 113)  # the rest held more rows than the first part's ratio said
    assert progress.expected_rows() == 203
    progress.close()
    progress.rows(5)  # after close: ignored, never an error
    assert not progress.active


def test_nothing_is_shown_before_the_job_starts(caplog):
    progress = JobProgress()
    with caplog.at_level(logging.INFO, logger="beam_hub.embed"):
        progress.began()
        progress.read(10, 1)
        progress.rows(3)
    assert progress.expected_rows() is None and not caplog.records


def test_the_terminal_line_ends_with_the_final_counts(capsys):
    progress = JobProgress()
    progress.start(100, bar=True)
    progress.began()
    progress.read(100, 7)
    progress.rows(5)
    progress.rejected(2)
    progress.close()
    err = capsys.readouterr().err
    assert "embedding:" in err and "7/7" in err and "2 rejected" in err


def test_summary_names_embedding_time_and_a_first_use_build_apart():
    summary = {
        "module": "builtin://all-MiniLM-L6-v2",
        "rows": 200,
        "seconds": 21.3,
        "rows_per_second": 9.4,
        "embedding_seconds": 1.6,
        "module_seconds": 15.2,
    }
    assert embed._rates(summary) == (
        " with builtin://all-MiniLM-L6-v2: 1.6s embedding (125 rows/s), "
        "15.2s building or fetching the module (once), 4.5s start-up and I/O"
    )
    warm = {**summary, "seconds": 5.0, "module_seconds": 0.02}
    assert embed._rates(warm) == (
        " with builtin://all-MiniLM-L6-v2: 1.6s embedding (125 rows/s), 3.4s start-up and I/O"
    )
    unreported = {**summary, "embedding_seconds": None}  # a runner without metrics
    assert embed._rates(unreported) == " (9 rows/s) with builtin://all-MiniLM-L6-v2"


@pytest.fixture
def texts(tmp_path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "text": f"text number {i}"}) + "\n" for i in range(3000))
        + "{not json\n",
        encoding="utf-8",
    )
    return str(path)


def job_args(texts: str, out: str, module: str) -> list[str]:
    return ["--input", texts, "--output", out, "--module", module]


def test_the_job_shows_progress_and_a_summary_with_its_embedding_rate(texts, tmp_path, modules_dir):
    args = job_args(texts, str(tmp_path / "emb"), modules_dir["text_embedder"])
    proc = subprocess.run(
        [sys.executable, "-m", "beam_hub", "embed", *args, "--max-errors", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "BEAM_HUB_PROGRESS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3001/3001" in proc.stderr, proc.stderr[-2000:]  # 3,000 embedded and the bad line
    assert "1 rejected" in proc.stderr
    line = proc.stdout.splitlines()[0]
    assert line.startswith("embedded 3000 rows in ") and "s embedding (" in line, line
    assert "start-up and I/O" in line and line.endswith(
        "; rejected 1 (errors: " + f"{tmp_path}/emb-errors-*.jsonl)"
    )


def test_summary_parts_add_up(texts, tmp_path, modules_dir):
    summary = embed.run(
        ["--runner=FnApiRunner", *job_args(texts, str(tmp_path / "emb"), modules_dir["text_embedder"])]
    )
    assert summary["rows"] == 3000 and summary["rejected"] == 1
    assert 0 < summary["embedding_seconds"] < summary["seconds"]
    assert 0 <= summary["module_seconds"] < summary["seconds"]
