"""Unicode tables for the in-graph tokenizer, computed from HuggingFace's own tokenizer.

Running the real BertNormalizer and BertPreTokenizer (the `tokenizers` package) over every code
point once, at build time, makes the TensorFlow tokenizer agree with HuggingFace by construction,
whatever Unicode version Python's own `unicodedata` has. Normalization is per character (clean
text, Chinese-character spacing, accent stripping, lower-casing), so a per-code-point table is
exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

OTHER, SPACE, ISOLATED = 0, 1, 2  # pre-tokenizer classes: part of a word / separator / word of its own
MAX_CODE_POINT = 0x110000


@dataclass
class TokenizerTables:
    vocab: list[str]
    #: code points whose normalized form is not themselves, and what they become (-1 padded)
    norm_keys: np.ndarray  # int64 [M]
    norm_values: np.ndarray  # int32 [M, K]
    #: code points that are separators (SPACE) or words of their own (ISOLATED)
    class_keys: np.ndarray  # int64 [C]
    class_values: np.ndarray  # int64 [C]
    #: code point ranges (inclusive) that the normalizer surrounds with spaces (CJK ideographs)
    isolated_ranges: list[tuple[int, int]]
    max_token_chars: int
    max_input_chars_per_word: int
    unk_token: str
    special_tokens: dict[str, int]  # literal text -> id, matched in the raw text


def _ranges(points: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p in sorted(points):
        if out and p == out[-1][1] + 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


def compute_tables(tokenizer_json: str) -> TokenizerTables:
    """Build the tables from a BERT tokenizer.json (~5 s: two calls per code point)."""
    from tokenizers import Tokenizer

    with open(tokenizer_json, encoding="utf-8") as f:
        config = json.load(f)
    if (
        config["normalizer"]["type"] != "BertNormalizer"
        or config["pre_tokenizer"]["type"] != "BertPreTokenizer"
    ):
        raise ValueError(f"{tokenizer_json} is not a BERT WordPiece tokenizer")
    tok = Tokenizer.from_file(tokenizer_json)
    normalizer, pre = tok.normalizer, tok.pre_tokenizer
    model = config["model"]
    vocab = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]

    norm: dict[int, list[int]] = {}
    spaced: list[int] = []
    for cp in range(MAX_CODE_POINT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        out = normalizer.normalize_str(ch)
        if out == ch:
            continue
        if out == f" {ch} ":
            spaced.append(cp)
            continue
        norm[cp] = [ord(c) for c in out]
    classes: dict[int, int] = {}
    for cp in range(MAX_CODE_POINT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        words = [w for w, _ in pre.pre_tokenize_str(f"a{chr(cp)}b")]
        if words == ["a", "b"]:
            classes[cp] = SPACE
        elif words == ["a", chr(cp), "b"]:
            classes[cp] = ISOLATED
        elif words != [f"a{chr(cp)}b"]:
            raise ValueError(f"unexpected pre-tokenization of U+{cp:04X}: {words}")
    width = max(len(v) for v in norm.values())
    keys = np.array(sorted(norm), dtype=np.int64)
    values = np.full((len(keys), width), -1, dtype=np.int32)
    for i, cp in enumerate(keys):
        values[i, : len(norm[int(cp)])] = norm[int(cp)]
    ckeys = np.array(sorted(classes), dtype=np.int64)
    special = {t["content"]: t["id"] for t in config["added_tokens"] if t.get("special")}
    prefix = model["continuing_subword_prefix"]
    return TokenizerTables(
        vocab=vocab,
        norm_keys=keys,
        norm_values=values,
        class_keys=ckeys,
        class_values=np.array([classes[int(c)] for c in ckeys], dtype=np.int64),
        isolated_ranges=_ranges(spaced),
        max_token_chars=max(len(t[len(prefix) :] if t.startswith(prefix) else t) for t in vocab),
        max_input_chars_per_word=model["max_input_chars_per_word"],
        unk_token=model["unk_token"],
        special_tokens=special,
    )
