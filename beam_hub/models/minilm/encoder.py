"""The BERT encoder of all-MiniLM-L6-v2 in TensorFlow, with mean pooling and L2 normalization."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf


class BertEncoder(tf.Module):
    """BERT (post-LayerNorm, erf GELU) from a HuggingFace BertModel state dict, as numpy arrays."""

    def __init__(
        self,
        weights: Mapping[str, np.ndarray],
        *,
        layers: int,
        heads: int,
        eps: float = 1e-12,
        dropout: float = 0.1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.heads = heads
        self.eps = eps
        self.dropout = dropout

        def var(key: str, transpose: bool = False) -> tf.Variable:
            value = weights[key]
            return tf.Variable(value.T.copy() if transpose else value, name=key.replace(".", "/"))

        self.word = var("embeddings.word_embeddings.weight")
        self.position = var("embeddings.position_embeddings.weight")
        self.token_type = var("embeddings.token_type_embeddings.weight")
        self.emb_ln = (var("embeddings.LayerNorm.weight"), var("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(layers):
            p = f"encoder.layer.{i}."
            self.layers.append(
                {
                    "q": (var(p + "attention.self.query.weight", True), var(p + "attention.self.query.bias")),
                    "k": (var(p + "attention.self.key.weight", True), var(p + "attention.self.key.bias")),
                    "v": (var(p + "attention.self.value.weight", True), var(p + "attention.self.value.bias")),
                    "o": (
                        var(p + "attention.output.dense.weight", True),
                        var(p + "attention.output.dense.bias"),
                    ),
                    "ln1": (
                        var(p + "attention.output.LayerNorm.weight"),
                        var(p + "attention.output.LayerNorm.bias"),
                    ),
                    "i": (var(p + "intermediate.dense.weight", True), var(p + "intermediate.dense.bias")),
                    "out": (var(p + "output.dense.weight", True), var(p + "output.dense.bias")),
                    "ln2": (var(p + "output.LayerNorm.weight"), var(p + "output.LayerNorm.bias")),
                }
            )

    def _ln(self, x: tf.Tensor, params: tuple[tf.Variable, tf.Variable]) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.eps) * params[0] + params[1]

    def _drop(self, x: tf.Tensor, training: tf.Tensor) -> tf.Tensor:
        return tf.cond(training, lambda: tf.nn.dropout(x, self.dropout), lambda: x)

    @staticmethod
    def _dense(x: tf.Tensor, params: tuple[tf.Variable, tf.Variable]) -> tf.Tensor:
        return tf.matmul(x, params[0]) + params[1]

    def encode(self, ids: tf.Tensor, mask: tf.Tensor, training: tf.Tensor) -> tf.Tensor:
        """Last hidden states [batch, length, hidden] for token ids and attention mask."""
        length = tf.shape(ids)[1]
        x = tf.gather(self.word, ids) + self.position[None, :length] + self.token_type[0]
        x = self._drop(self._ln(x, self.emb_ln), training)
        batch, hidden = tf.shape(ids)[0], self.word.shape[1]
        size = hidden // self.heads
        bias = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * tf.float32.min

        def split(t: tf.Tensor) -> tf.Tensor:
            return tf.transpose(tf.reshape(t, [batch, length, self.heads, size]), [0, 2, 1, 3])

        for layer in self.layers:
            q, k, v = (split(self._dense(x, layer[n])) for n in ("q", "k", "v"))
            scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(size)) + bias
            probs = self._drop(tf.nn.softmax(scores, axis=-1), training)
            context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [batch, length, hidden])
            x = self._ln(self._drop(self._dense(context, layer["o"]), training) + x, layer["ln1"])
            inner = tf.nn.gelu(self._dense(x, layer["i"]), approximate=False)
            x = self._ln(self._drop(self._dense(inner, layer["out"]), training) + x, layer["ln2"])
        return x


def mean_pool_normalize(hidden: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """sentence-transformers' Pooling(mean) + Normalize: mean over the mask, then L2 (eps 1e-12)."""
    m = tf.cast(mask, hidden.dtype)[:, :, None]
    summed = tf.reduce_sum(hidden * m, axis=1)
    mean = summed / tf.maximum(tf.reduce_sum(m, axis=1), 1e-9)
    return mean / tf.maximum(tf.norm(mean, axis=1, keepdims=True), 1e-12)
