"""Signature specs (inputs and outputs with dtypes and shapes) and binding inputs to them.

Imports TensorFlow: only reached through ``beam_hub.load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from beam_hub.errors import InputError, OutputKeyError
from beam_hub.signature_defs import describe


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: its name, dtype and shape (None for an unknown dimension)."""

    name: str
    dtype: tf.dtypes.DType
    shape: tf.TensorShape

    def __str__(self) -> str:
        return describe(self.name, self.to_json())

    def to_json(self) -> dict[str, Any]:
        """``{"dtype": "float32", "shape": [None, 3]}`` (shape None: unknown rank)."""
        return {
            "dtype": self.dtype.name,
            "shape": self.shape.as_list() if self.shape.rank is not None else None,
        }


@dataclass(frozen=True)
class SignatureSpec:
    """A named way to apply a module: its inputs and outputs by name."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]

    def __str__(self) -> str:
        ins = ", ".join(str(i) for i in self.inputs.values())
        outs = ", ".join(str(o) for o in self.outputs.values())
        return f"{self.name}({ins}) -> {{{outs}}}"

    def describe_inputs(self) -> str:
        return ", ".join(str(i) for i in self.inputs.values()) or "no inputs"

    def to_json(self) -> dict[str, Any]:
        """Inputs and outputs as ``{name: {"dtype": "float32", "shape": [None, 3]}}`` (shape None: unknown rank)."""
        return {
            "inputs": {k: i.to_json() for k, i in self.inputs.items()},
            "outputs": {k: o.to_json() for k, o in self.outputs.items()},
        }


def _info(name: str, spec: Any) -> TensorInfo:
    return TensorInfo(name, tf.as_dtype(spec.dtype), tf.TensorShape(spec.shape))


def spec_of_signature(name: str, fn: Any) -> SignatureSpec:
    """Spec of a signature ConcreteFunction (keyword inputs, dict outputs)."""
    _args, kwargs = fn.structured_input_signature
    inputs = {k: _info(k, v) for k, v in sorted(kwargs.items())}
    outputs = {k: _info(k, v) for k, v in sorted(fn.structured_outputs.items())}
    return SignatureSpec(name, inputs, outputs)


@dataclass(frozen=True)
class CallSpec:
    """What a restored ``__call__`` (the Reusable SavedModel API) accepts, read once from its traces.

    ``signature`` describes its input (one tensor or a dict of tensors) and outputs, from the
    trace with ``training=False`` when there are several; ``takes_dict`` says whether the input is
    a dict; ``takes_training`` whether it accepts ``training=`` (many TF2 exports do not).
    """

    signature: SignatureSpec
    takes_dict: bool
    takes_training: bool

    @classmethod
    def of(cls, fn: Any) -> CallSpec | None:
        """The spec of a restored ``__call__``; None when it has no traced signature to describe."""
        lister = getattr(fn, "_list_all_concrete_functions_for_serialization", None)
        if lister is None:
            return None
        concrete = list(lister())  # the only public-enough view of a restored function's traces
        if not concrete:
            return None

        def is_training(cf: Any) -> bool:
            args, kwargs = cf.structured_input_signature
            return any(a is True for a in list(args[1:]) + list(kwargs.values()))

        cf = sorted(concrete, key=is_training)[0]
        args, _kwargs = cf.structured_input_signature
        if not args:
            return None
        first = args[0]
        if isinstance(first, Mapping):
            inputs = {k: _info(k, v) for k, v in sorted(first.items())}
        elif isinstance(first, tf.TensorSpec):
            inputs = {first.name or "inputs": _info(first.name or "inputs", first)}
        else:
            return None
        out = cf.structured_outputs
        if isinstance(out, Mapping):
            outputs = {k: _info(k, v) for k, v in sorted(out.items()) if hasattr(v, "dtype")}
        elif hasattr(out, "dtype"):
            outputs = {"default": _info("default", out)}
        else:
            outputs = {}
        takes_training = any(
            "training" in (c.structured_input_signature[1] or {}) or len(c.structured_input_signature[0]) > 1
            for c in concrete
        )
        return cls(SignatureSpec("__call__", inputs, outputs), isinstance(first, Mapping), takes_training)

    def invoke(self, fn: Any, inputs: Mapping[str, Any], training: Any = None, **kwargs: Any) -> Any:
        """Call ``fn`` with bound ``inputs``; ``training`` is passed only where ``fn`` accepts it."""
        arg = dict(inputs) if self.takes_dict else next(iter(inputs.values()))
        if training is not None and self.takes_training:
            kwargs["training"] = training
        return fn(arg, **kwargs)


def to_tensor(value: Any, info: TensorInfo, signature: str) -> tf.Tensor:
    """Convert numpy arrays, lists, Python strings or tensors to the spec's dtype, checking shape."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        tensor = value if value.dtype == info.dtype else _cast_tensor(value, info, signature)
        shape = tensor.shape
    else:
        if info.dtype == tf.string:
            arr = (
                np.asarray(value, dtype=object)
                if not isinstance(value, np.ndarray) or value.dtype.kind == "U"
                else value
            )
        else:
            arr = np.asarray(value)
            target = info.dtype.as_numpy_dtype
            if arr.dtype.kind in "USO":
                raise InputError(
                    f"Input {info.name!r} of signature {signature!r} expects {info.dtype.name}, "
                    f"got {'strings' if arr.dtype.kind in 'US' else 'Python objects'} ({arr.dtype})."
                )
            if arr.dtype != target:
                if not (np.can_cast(arr.dtype, target, "same_kind") or arr.dtype.kind in "biu"):
                    raise InputError(
                        f"Input {info.name!r} of signature {signature!r} expects {info.dtype.name}; "
                        f"{arr.dtype} cannot be converted without losing information."
                    )
                arr = arr.astype(target)
        shape = tf.TensorShape(arr.shape)
        tensor = None
    if not info.shape.is_compatible_with(shape):
        raise InputError(
            f"Input {info.name!r} of signature {signature!r} expects shape {_dims(info.shape)}, "
            f"got {_dims(shape)}. (Inputs are batches: the first dimension is the batch.)"
        )
    return tensor if tensor is not None else tf.constant(arr, dtype=info.dtype)


def _cast_tensor(value: Any, info: TensorInfo, signature: str) -> tf.Tensor:
    if value.dtype == tf.string or info.dtype == tf.string:
        raise InputError(
            f"Input {info.name!r} of signature {signature!r} expects {info.dtype.name}, got a {value.dtype.name} tensor."
        )
    return tf.cast(value, info.dtype)


def _dims(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "[...]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def bind_inputs(inputs: Any, spec: SignatureSpec) -> dict[str, tf.Tensor]:
    """Bind a single value (one-input signatures) or a dict (by name) to the spec's inputs."""
    if isinstance(inputs, Mapping):
        missing = sorted(set(spec.inputs) - set(inputs))
        unexpected = sorted(set(inputs) - set(spec.inputs))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if unexpected:
                parts.append(f"unexpected {unexpected}")
            raise InputError(
                f"Signature {spec.name!r} takes inputs {{{spec.describe_inputs()}}}: {', '.join(parts)}. "
                "Pass a dict with exactly these keys."
            )
        return {k: to_tensor(inputs[k], spec.inputs[k], spec.name) for k in spec.inputs}
    if len(spec.inputs) != 1:
        raise InputError(
            f"Signature {spec.name!r} takes {len(spec.inputs)} inputs {{{spec.describe_inputs()}}}; "
            "pass them as a dict keyed by these names."
        )
    ((name, info),) = spec.inputs.items()
    return {name: to_tensor(inputs, info, spec.name)}


def select_outputs(outputs: Any, spec: SignatureSpec, *, as_dict: bool, output_key: str | None) -> Any:
    """Pick what the caller asked for from a signature's dict (or a bare tensor) of outputs."""
    if not isinstance(outputs, Mapping):
        outputs = {"default": outputs}
    if as_dict:
        if output_key is not None:
            raise InputError("Pass either as_dict=True or output_key=..., not both.")
        return dict(outputs)
    if output_key is not None:
        if output_key not in outputs:
            raise OutputKeyError(
                f"Signature {spec.name!r} has no output {output_key!r}; its outputs are {sorted(outputs)}."
            )
        return outputs[output_key]
    if "default" in outputs:
        return outputs["default"]
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise OutputKeyError(
        f"Signature {spec.name!r} has outputs {sorted(outputs)} and none is named 'default': pass "
        "output_key=<name> for one of them or as_dict=True for all."
    )
