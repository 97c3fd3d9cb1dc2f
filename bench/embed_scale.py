"""The embedding job at size, with a cheap module, so that the job's own machinery is what is measured.

A hashed-token embedding (64 dimensions: split, hash to 4,096 buckets, mean of the rows) costs the
module almost nothing. For each size (``--rows``, default 100,000 and 1,000,000; add 10000000 for
the memory check) the same generated rows are written as JSONL, CSV, text and Parquet (in a temp
dir, removed after), and `beam-hub embed` runs on each in its own process (Parquet output, the
default local runner). Printed per run: rows/s as the job reports it (pipeline start to end),
wall seconds of the whole command, and the process's peak RSS. Then the ratios the targets name:
each text format against the Parquet job on the same rows, and the Parquet job against the floor
with no Beam at all (pyarrow reads the Parquet file in batches, the module embeds each, pyarrow
writes the result), and peak RSS at each size against the smallest.

    python bench/embed_scale.py [--rows 100000 1000000 10000000] [--formats jsonl csv txt parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

WORDS = (
    "the quick brown fox jumps over a lazy dog while data engineers embed millions of records "
    "on two cores with one module loaded once per worker and nothing held in memory"
).split()
SUMMARY = re.compile(r"embedded (\d+) rows in ([\d.]+)s")


def build_module(path: str) -> None:
    import numpy as np
    import tensorflow as tf

    class Hashed(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = tf.Variable(np.random.default_rng(0).standard_normal((4096, 64)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
        def serve(self, sentences):
            ids = tf.strings.to_hash_bucket_fast(tf.strings.split(sentences), 4096)
            return {"default": tf.reduce_mean(tf.ragged.map_flat_values(tf.gather, self.table, ids), axis=1)}

    m = Hashed()
    tf.saved_model.save(m, path, signatures={"default": m.serve})


def write_inputs(work: str, n: int, formats: list[str]) -> dict[str, str]:
    """The same ``n`` rows (id, text of 3 to 14 words) in each format; streamed, never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    paths = {fmt: os.path.join(work, f"rows{n}.{fmt}") for fmt in formats}
    files = {fmt: open(paths[fmt], "w", encoding="utf-8", newline="") for fmt in formats if fmt != "parquet"}
    writer = (
        pq.ParquetWriter(paths["parquet"], pa.schema([("id", pa.int64()), ("text", pa.string())]))
        if "parquet" in paths
        else None
    )
    if "csv" in files:
        files["csv"].write("id,text\n")
    chunk = 100_000
    for start in range(0, n, chunk):
        ids = range(start, min(n, start + chunk))
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in ids]
        if "jsonl" in files:
            files["jsonl"].writelines(f'{{"id": {i}, "text": {json.dumps(t)}}}\n' for i, t in zip(ids, texts))
        if "csv" in files:
            files["csv"].writelines(f"{i},{t}\n" for i, t in zip(ids, texts))
        if "txt" in files:
            files["txt"].writelines(t + "\n" for t in texts)
        if writer is not None:
            writer.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": texts}))
    for f in files.values():
        f.close()
    if writer is not None:
        writer.close()
    return paths


def floor(src: str, module: str, out: str, batch_rows: int = 8192) -> float:
    """Rows/s with no Beam: pyarrow reads the Parquet file, the module embeds, pyarrow writes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import beam_hub

    m = beam_hub.load(module)
    start = time.perf_counter()
    rows = 0
    reader = pq.ParquetFile(src, pre_buffer=False)
    writer = None
    for batch in reader.iter_batches(batch_size=batch_rows):
        texts = batch.column("text").to_numpy(zero_copy_only=False)
        embedded = m(texts)
        table = pa.Table.from_batches([batch]).append_column(
            "embedding",
            pa.FixedSizeListArray.from_arrays(embedded.reshape(-1), embedded.shape[1]).cast(
                pa.list_(pa.float32())
            ),
        )
        plain = [name for name in table.schema.names if name != "embedding"]  # as the job writes it
        writer = writer or pq.ParquetWriter(out, table.schema, use_dictionary=plain, write_statistics=plain)
        writer.write_table(table)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    return rows / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--formats", nargs="+", default=["jsonl", "csv", "txt", "parquet"])
    args = ap.parse_args()
    formats = list(dict.fromkeys([*args.formats, "parquet"]))

    work = tempfile.mkdtemp(prefix="bench-embed-scale-")
    try:
        module = os.path.join(work, "hashed")
        build_module(module)
        results: dict[tuple[int, str], dict[str, float]] = {}
        for n in args.rows:
            paths = write_inputs(work, n, formats)
            for fmt in formats:
                out = os.path.join(work, f"out-{n}-{fmt}", "emb")
                result = _measured(paths[fmt], module, out, os.path.join(work, "cache"))
                results[n, fmt] = result
                print(
                    f"{n:>10,} rows  {fmt:8} {result['rows_s']:>9,.0f} rows/s  job {result['job_s']:6.1f}s  "
                    f"wall {result['wall_s']:6.1f}s  cores {result['cores']:.2f}  peak RSS {result['rss_mb']:7,.0f} MB",
                    flush=True,
                )
                shutil.rmtree(os.path.dirname(out), ignore_errors=True)
            base = floor(paths["parquet"], module, os.path.join(work, "floor.parquet"))
            print(
                f"{n:>10,} rows  floor    {base:>9,.0f} rows/s  (pyarrow read + module + pyarrow write, no Beam)"
            )
            parquet = results[n, "parquet"]["rows_s"]
            ratios = "  ".join(
                f"{fmt} {results[n, fmt]['rows_s'] / parquet:.2f}" for fmt in formats if fmt != "parquet"
            )
            ratios = f"ratios to the Parquet job: {ratios};  " if ratios else ""
            print(f"{n:>10,} rows  {ratios}Parquet job / floor {parquet / base:.2f}")
            for p in paths.values():
                os.unlink(p)
        smallest = min(args.rows)
        for fmt in formats:
            peaks = "  ".join(
                f"{n:,}: {results[n, fmt]['rss_mb'] / results[smallest, fmt]['rss_mb']:.2f}x"
                for n in args.rows
            )
            print(f"peak RSS against {smallest:,} rows, {fmt}: {peaks}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measured(src: str, module: str, out: str, cache: str) -> dict[str, float]:
    """One job in its own process, with the peak RSS of that process alone (wait4's rusage)."""
    cmd = [sys.executable, "-m", "beam_hub", "embed", "--input", src, "--output", out, "--module", module]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TFHUB_CACHE_DIR": cache}
    )
    stdout = proc.stdout.read().decode()
    stderr = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    found = SUMMARY.search(stdout)
    if not found:
        raise SystemExit(f"no summary in:\n{stdout}")
    return {
        "rows": int(found.group(1)),
        "job_s": float(found.group(2)),
        "rows_s": int(found.group(1)) / float(found.group(2)),
        "wall_s": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "cores": (usage.ru_utime + usage.ru_stime) / wall,  # CPU seconds per second: cores kept busy
    }


if __name__ == "__main__":
    main()
