"""The embedding job's memory does not grow with its input (a bound, not a timing).

A 2,000,000-row JSONL job runs in its own process on the default local runner; its peak RSS
must stay within 1.3x of the same job's on 200,000 rows. With the reshuffle the local runner
used to hold every row in (its GroupByKey keeps its whole input in memory), a 10x larger input
took 1.9x the memory (100,000 rows 0.85 GB, 1,000,000 rows 1.62 GB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

WORDS = "a small set of words that make short texts for a cheap module to embed".split()


def write_jsonl(path: str, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, rows, 100_000):
            f.writelines(
                json.dumps({"id": i, "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 9))})
                + "\n"
                for i in range(start, min(rows, start + 100_000))
            )


def peak_rss_of_job(src: str, out: str, module: str) -> tuple[int, str]:
    """(peak RSS in KB of the `beam-hub embed` process alone, its stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "beam_hub", "embed", "--input", src, "--output", out, "--module", module],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        text=True,
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stdout
    return usage.ru_maxrss, stdout


def test_peak_memory_does_not_grow_with_the_input(tmp_path, modules_dir):
    small, large = str(tmp_path / "small.jsonl"), str(tmp_path / "large.jsonl")
    write_jsonl(small, 200_000)
    write_jsonl(large, 2_000_000)
    base, out = peak_rss_of_job(small, str(tmp_path / "s" / "emb"), modules_dir["text_embedder"])
    assert "embedded 200000 rows" in out
    peak, out = peak_rss_of_job(large, str(tmp_path / "l" / "emb"), modules_dir["text_embedder"])
    assert "embedded 2000000 rows" in out
    assert peak <= 1.3 * base, f"2,000,000 rows peaked at {peak // 1024} MB, 200,000 at {base // 1024} MB"
