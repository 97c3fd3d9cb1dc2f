"""The BERT encoder of all-MiniLM-L6-v2 in TensorFlow, with mean pooling and L2 normalization."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

_PAD = 32  # the ones column carrying the bf16 Q/K/V bias, padded to the matrix units' tile width


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
        """Layer norm over the last axis, written as Keras' fused LayerNormalization writes it (a
        FusedBatchNormV3 over [1, rows, features, 1] in NCHW, then gamma and beta): oneDNN runs
        that as one kernel, 2-3x faster than the moments formula, same result to ~1e-6."""
        shape = tf.shape(x)
        rows = tf.reduce_prod(shape[:-1])
        y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(  # the raw op: tf.nn's wrapper raises eps to 1e-5
            x=tf.reshape(x, [1, rows, x.shape[-1], 1]),
            scale=tf.ones([rows]),
            offset=tf.zeros([rows]),
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=self.eps,
            data_format="NCHW",
            is_training=True,
        )
        return tf.reshape(y, shape) * params[0] + params[1]

    def _drop(self, x: tf.Tensor, training: tf.Tensor) -> tf.Tensor:
        return tf.cond(training, lambda: tf.nn.dropout(x, self.dropout), lambda: x)

    def compute_weights(self, dtype: tf.DType = tf.float32) -> list[dict[str, tuple[tf.Tensor, tf.Tensor]]]:
        """Each layer's matmul weights for :meth:`encode`, computed once per call (outside the loop
        over chunks) from the float32 variables, which stay the trainable weights.

        Q, K and V are one [hidden, 3 x hidden] matrix with 1/sqrt(head size) folded into the query
        part. In bf16 the matrices are cast, and biases that would need a bf16 BiasAdd (TensorFlow
        runs those element by element, slower than the matmul) are moved: the Q/K/V bias becomes an
        extra row of its matrix (the input gets a column of ones, padded to a multiple of 32
        columns for the matrix units), and the output projections' biases are added in float32
        with the residual. The intermediate bias stays a BiasAdd: oneDNN fuses it with the GELU.
        """
        size = self.word.shape[1] // self.heads
        scale = 1.0 / math.sqrt(size)
        out = []
        for layer in self.layers:
            (wq, bq), (wk, bk), (wv, bv) = layer["q"], layer["k"], layer["v"]
            w_qkv, b_qkv = tf.concat([wq * scale, wk, wv], axis=1), tf.concat([bq * scale, bk, bv], axis=0)
            if dtype != tf.float32:
                w_qkv = tf.concat([w_qkv, b_qkv[None, :], tf.zeros([_PAD - 1, w_qkv.shape[1]])], axis=0)
                b_qkv = None
            out.append(
                {
                    "qkv": (tf.cast(w_qkv, dtype), None if b_qkv is None else tf.cast(b_qkv, dtype)),
                    "o": (tf.cast(layer["o"][0], dtype), layer["o"][1]),
                    "i": (tf.cast(layer["i"][0], dtype), tf.cast(layer["i"][1], dtype)),
                    "out": (tf.cast(layer["out"][0], dtype), layer["out"][1]),
                }
            )
        return out

    def encode(
        self,
        ids: tf.Tensor,
        mask: tf.Tensor,
        training: tf.Tensor,
        weights: list[dict[str, tuple[tf.Tensor, tf.Tensor]]] | None = None,
    ) -> tf.Tensor:
        """Last hidden states [batch, length, hidden] for token ids and attention mask.

        Matmuls run on 2-D [tokens, features] operands in the dtype of ``weights`` (see
        :meth:`compute_weights`; float32 when not given), attention softmax included.
        Embeddings, layer norms, residuals and everything after the encoder stay float32.
        """
        weights = self.compute_weights() if weights is None else weights
        dtype = weights[0]["qkv"][0].dtype
        length = tf.shape(ids)[1]
        x = tf.gather(self.word, ids) + self.position[None, :length] + self.token_type[0]
        x = self._drop(self._ln(x, self.emb_ln), training)
        batch, hidden = tf.shape(ids)[0], self.word.shape[1]
        size = hidden // self.heads
        x = tf.reshape(x, [-1, hidden])  # [tokens, hidden] from here on
        bias = tf.cast((1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -1e9, dtype)
        if dtype != tf.float32:  # the column of ones that carries the Q/K/V bias (see compute_weights)
            ones = tf.concat(
                [tf.ones([tf.shape(x)[0], 1], dtype), tf.zeros([tf.shape(x)[0], _PAD - 1], dtype)], 1
            )

        def project(t: tf.Tensor, params: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
            """The output projections: matmul in ``dtype``, bias in float32."""
            return tf.nn.bias_add(tf.cast(tf.matmul(t, params[0]), tf.float32), params[1])

        for layer, w in zip(self.layers, weights):
            if dtype == tf.float32:
                qkv = tf.nn.bias_add(tf.matmul(x, w["qkv"][0]), w["qkv"][1])
            else:
                qkv = tf.matmul(tf.concat([tf.cast(x, dtype), ones], axis=1), w["qkv"][0])
            qkv = tf.reshape(qkv, [batch, length, 3, self.heads, size])
            q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each [batch, heads, length, size]
            probs = self._drop(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias, axis=-1), training)
            context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, hidden])
            x = self._ln(self._drop(project(context, w["o"]), training) + x, layer["ln1"])
            inner = tf.nn.gelu(
                tf.nn.bias_add(tf.matmul(tf.cast(x, dtype), w["i"][0]), w["i"][1]), approximate=False
            )
            x = self._ln(self._drop(project(inner, w["out"]), training) + x, layer["ln2"])
        return tf.reshape(x, [batch, length, hidden])


def mean_pool_normalize(hidden: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """sentence-transformers' Pooling(mean) + Normalize: mean over the mask, then L2 (eps 1e-12)."""
    m = tf.cast(mask, hidden.dtype)[:, :, None]
    summed = tf.reduce_sum(hidden * m, axis=1)
    mean = summed / tf.maximum(tf.reduce_sum(m, axis=1), 1e-9)
    return mean / tf.maximum(tf.norm(mean, axis=1, keepdims=True), 1e-12)
