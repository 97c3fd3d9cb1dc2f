"""Apply a module to a batch of Beam elements: stack, one signature call, split rows.

The model-facing core shared by ApplyHubModule and HubModelHandler (RunInference): it knows the
module, not Beam. Per batch it stacks each input into one array, makes one signature call, converts
each output to numpy once, and splits rows as numpy views (no per-row TensorFlow work).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from beam_hub.errors import InputError
from beam_hub.module import HubModule
from beam_hub.signatures import SignatureSpec, TensorInfo


@dataclass(frozen=True)
class ApplySpec:
    """How to apply a module to elements: which signature, which outputs, what the elements are."""

    signature: str | None = None
    output_key: str | None = None
    as_dict: bool = False
    from_examples: bool = False  # elements are serialized tf.train.Example records


def stack(values: Sequence[Any], info: TensorInfo, signature: str) -> np.ndarray:
    """One batch array from per-element values (arrays, numbers, str or bytes)."""
    if info.dtype == tf.string:
        if info.shape.rank != 1:
            return np.array(list(values), dtype=object)
        arr = np.empty(len(values), dtype=object)  # one str/bytes per element, any lengths
        arr[:] = list(values)
        return arr
    try:
        arr = np.array(values)  # ~3x faster than np.stack for many small rows
        if arr.dtype != object:
            return arr
    except ValueError:  # ragged: say which shapes met in the batch
        pass
    shapes = collections.Counter(np.shape(v) for v in values)
    if len(shapes) <= 1:
        return np.stack(values)
    listing = ", ".join(f"{shape} x {n}" for shape, n in shapes.most_common(5))
    raise InputError(
        f"Input {info.name!r} of signature {signature!r}: elements in one batch have different "
        f"shapes ({listing}); the signature expects {info}. Pad or reshape elements to one "
        "shape before applying the module."
    )


def _example_feature(info: TensorInfo) -> tuple[Any, tf.dtypes.DType]:
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
        return tf.io.FixedLenFeature(inner.as_list(), ex_dtype), ex_dtype
    if inner.rank == 1:
        return tf.io.VarLenFeature(ex_dtype), ex_dtype
    raise InputError(f"Input {info}: only one unknown inner dimension can be parsed from tf.Examples.")


def parse_examples(records: Sequence[bytes], spec: SignatureSpec) -> dict[str, tf.Tensor]:
    """Parse serialized tf.train.Examples, one feature per signature input, in one op per batch."""
    features = {name: _example_feature(info) for name, info in spec.inputs.items()}
    try:
        parsed = tf.io.parse_example(tf.constant(list(records), dtype=tf.string),
                                     {name: feat for name, (feat, _) in features.items()})
    except tf.errors.InvalidArgumentError as e:
        raise InputError(
            f"Cannot parse tf.Examples for signature {spec.name!r} (features {spec.describe_inputs()}): "
            f"{e.message.splitlines()[0]}"
        ) from None
    out = {}
    for name, info in spec.inputs.items():
        value = parsed[name]
        if isinstance(value, tf.SparseTensor):
            value = tf.sparse.to_dense(value)
        out[name] = value if value.dtype == info.dtype else tf.cast(value, info.dtype)
    return out


class LoadedModule:
    """A loaded module plus the batch logic; what Beam shares per process (or proxies per machine)."""

    def __init__(self, module: HubModule) -> None:
        self.module = module

    def spec(self, apply: ApplySpec) -> SignatureSpec:
        return self.module.signature(apply.signature)

    def apply_batch(self, elements: Sequence[Any], apply: ApplySpec) -> list[Any]:
        """Outputs for ``elements``, in order: arrays, or dicts of arrays with ``as_dict``."""
        spec = self.spec(apply)
        if apply.from_examples:
            inputs: Any = parse_examples(elements, spec)
        elif isinstance(elements[0], Mapping):
            missing = [k for k in spec.inputs if k not in elements[0]]
            if missing:  # let the module's binding raise its full message
                inputs = dict(elements[0])
            else:
                inputs = {k: stack([e[k] for e in elements], info, spec.name) for k, info in spec.inputs.items()}
        elif len(spec.inputs) == 1:
            (info,) = spec.inputs.values()
            inputs = stack(elements, info, spec.name)
        else:
            inputs = elements[0]  # the module raises: several inputs need a dict
        outputs = self.apply_columns(inputs, apply, len(elements))
        if isinstance(outputs, Mapping):
            keys = list(outputs)
            return [dict(zip(keys, row)) for row in zip(*(list(outputs[k]) for k in keys))]
        return list(outputs)

    def apply_columns(self, inputs: Any, apply: ApplySpec, n: int) -> Any:
        """One signature call on whole columns; numpy outputs with one row per input row.

        Outputs are zero-copy, read-only views of TensorFlow's results (``.numpy()`` would copy
        each once more); Beam elements are immutable anyway.
        """
        spec = self.spec(apply)
        outputs = self.module(inputs, signature=spec.name, as_dict=apply.as_dict, output_key=apply.output_key,
                              numpy=False)
        if isinstance(outputs, Mapping):
            return {key: _check_batch(key, np.asarray(value), n, spec) for key, value in outputs.items()}
        return _check_batch("default", np.asarray(outputs), n, spec)


def _check_batch(key: str, value: np.ndarray, n: int, spec: SignatureSpec) -> np.ndarray:
    if value.ndim == 0 or len(value) != n:
        raise InputError(
            f"Output {key!r} of signature {spec.name!r} has shape {np.shape(value)}, not one row per "
            f"element ({n}); it cannot be split into per-element results. Use a batched signature."
        )
    return value
