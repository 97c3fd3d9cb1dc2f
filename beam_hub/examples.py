"""``tf.train.Example`` records, in one place: parsing them for a signature, reading them as dicts,
and writing the records beam-hub produces (training examples, embeddings).

Imports TensorFlow: reached only from code that runs modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from beam_hub.errors import InputError
from beam_hub.signatures import SignatureSpec, TensorInfo


def feature_spec(info: TensorInfo) -> tf.io.FixedLenFeature | tf.io.VarLenFeature:
    """How to parse one signature input (a batch of it) from tf.Examples: fixed or variable length."""
    if info.shape.rank is None or info.shape.rank < 1:
        raise InputError(f"Input {info} has no batch dimension; it cannot be parsed from tf.Examples.")
    if info.dtype.is_floating:
        ex_dtype = tf.float32
    elif info.dtype.is_integer or info.dtype == tf.bool:
        ex_dtype = tf.int64
    elif info.dtype == tf.string:
        ex_dtype = tf.string
    else:
        raise InputError(f"Input {info} has a dtype tf.train.Example cannot hold (float, int or bytes only).")
    inner = info.shape[1:]
    if inner.is_fully_defined():
        return tf.io.FixedLenFeature(inner.as_list(), ex_dtype)
    if inner.rank == 1:
        return tf.io.VarLenFeature(ex_dtype)
    raise InputError(f"Input {info}: only one unknown inner dimension can be parsed from tf.Examples.")


def dense(value: tf.Tensor | tf.SparseTensor, dtype: tf.dtypes.DType) -> tf.Tensor:
    """A parsed feature as a dense tensor of ``dtype``."""
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(value)
    return value if value.dtype == dtype else tf.cast(value, dtype)


def parse_examples(records: Sequence[bytes], spec: SignatureSpec) -> dict[str, tf.Tensor]:
    """Parse serialized tf.train.Examples, one feature per signature input, in one op per batch."""
    features = {name: feature_spec(info) for name, info in spec.inputs.items()}
    try:
        parsed = tf.io.parse_example(tf.constant(list(records), dtype=tf.string), features)
    except tf.errors.InvalidArgumentError as e:
        raise InputError(
            f"Cannot parse tf.Examples for signature {spec.name!r} (features {spec.describe_inputs()}): "
            f"{e.message.splitlines()[0]}"
        ) from None
    return {name: dense(parsed[name], info.dtype) for name, info in spec.inputs.items()}


def to_dict(record: bytes) -> dict[str, Any]:
    """One serialized tf.Example as a dict: a feature's one value as is, several as a list."""
    out = {}
    for name, feature in tf.train.Example.FromString(record).features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        out[name] = values[0] if len(values) == 1 else values
    return out


def feature_kinds(record: bytes) -> dict[str, str | None]:
    """Feature name -> "bytes_list", "int64_list" or "float_list" of one serialized tf.Example."""
    return {
        name: f.WhichOneof("kind") for name, f in tf.train.Example.FromString(record).features.feature.items()
    }


def _feature(value: Any) -> tf.train.Feature:
    """Text, bytes, integers or floats (a scalar or an array of any shape, flattened) as a Feature."""
    arr = np.asarray(value)
    if arr.dtype.kind in "USO" or isinstance(value, (str, bytes)):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in np.atleast_1d(value).tolist()]
            )
        )
    if arr.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=arr.reshape(-1).tolist()))
    return tf.train.Feature(float_list=tf.train.FloatList(value=arr.reshape(-1).astype(np.float32).tolist()))


def serialize(features: Mapping[str, Any]) -> bytes:
    """A serialized tf.Example of ``features`` (name -> text, bytes, ints or floats)."""
    return tf.train.Example(
        features=tf.train.Features(feature={name: _feature(value) for name, value in features.items()})
    ).SerializeToString()
