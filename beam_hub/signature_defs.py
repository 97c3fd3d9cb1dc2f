"""A module's signatures read from its ``saved_model.pb`` alone: no TensorFlow import, no load.

The SavedModel protobuf is parsed with the message classes of :mod:`beam_hub.protos` (TensorFlow's
field numbers, declared without TensorFlow). Signatures come from each meta graph's
``signature_def`` (inputs and outputs as TensorInfo: name, dtype, shape); ``__call__`` from the
saved object graph: the root's ``__call__`` function, each of its traces' canonicalized input
signature and output signature (StructuredValue: tuples, dicts and TensorSpecs).

What a protobuf cannot tell is reported as unknown, never guessed: a dtype number this table does
not name is ``"unknown (N)"``; a sparse or composite tensor's shape is ``None``; a ``__call__``
output that is not a plain TensorSpec (a RaggedTensorSpec, ...) is ``{"dtype": "unknown", "shape":
None}``. The result has the form of :meth:`beam_hub.signatures.SignatureSpec.to_json`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from beam_hub.errors import SignatureNotFoundError
from beam_hub.protos import read_saved_model
from beam_hub.savedmodel import is_tf1_hub_module

#: TensorFlow's DataType enum (tensorflow/core/framework/types.proto) -> tf.dtypes names.
DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    15: "qint16",
    16: "quint16",
    17: "uint16",
    18: "complex128",
    19: "float16",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
    24: "float8_e5m2",
    25: "float8_e4m3fn",
}
CALL = "__call__"  # the Reusable SavedModel API's call, as beam_hub.load names it
_INTERNAL = ("__saved_model_init_op", "__saved_model_train_op")  # TensorFlow's own, not signatures to call


def read_signatures(
    module_dir: str | os.PathLike, tags: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every way to apply the module in ``module_dir``, read from its ``saved_model.pb``, as
    :attr:`beam_hub.HubModule.signatures` names them: every signature of every meta graph (tag set)
    and, for a TF2 module whose root object has one, ``"__call__"`` (its input spec from the trace
    with ``training=False``, as loading picks it). ``{name: {"inputs": {...}, "outputs": {...},
    "method": ..., "tags": [...]}}``, each input and output ``{"dtype": "float32", "shape": [None, 3]}``
    (shape ``None``: unknown rank). Where two meta graphs name the same signature, the first
    (TensorFlow's default tag set comes first) wins; ``tags`` reads only the meta graph with exactly
    those tags (SignatureNotFoundError, listing the tag sets, when there is none). NotASavedModelError
    when the file is missing or is not a SavedModel protobuf."""
    saved = read_saved_model(module_dir)
    graphs = list(saved.meta_graphs)
    if tags is not None:
        graphs = [g for g in graphs if set(g.meta_info_def.tags) == set(tags)]
        if not graphs:
            have = [sorted(g.meta_info_def.tags) for g in saved.meta_graphs]
            raise SignatureNotFoundError(
                f"{module_dir} has no graph tagged {sorted(tags)}; its graphs' tag sets are {have}."
            )
    found: dict[str, dict[str, Any]] = {}
    for meta_graph in graphs:
        tags = sorted(meta_graph.meta_info_def.tags)
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name in _INTERNAL:
                continue
            found.setdefault(
                name,
                {
                    "inputs": {k: _tensor(v) for k, v in sorted(signature.inputs.items())},
                    "outputs": {k: _tensor(v) for k, v in sorted(signature.outputs.items())},
                    "method": signature.method_name,
                    "tags": tags,
                },
            )
    if graphs and not is_tf1_hub_module(os.fspath(module_dir)):
        call = _call_spec(graphs[0])
        if call is not None:
            found[CALL] = {**call, "method": "", "tags": sorted(graphs[0].meta_info_def.tags)}
    return found


def default_signature(names: Collection[str]) -> str | None:
    """The signature a module applies by default: "default", else "serving_default", else "__call__"."""
    return next((name for name in ("default", "serving_default", CALL) if name in names), None)


def describe(name: str, tensor: dict[str, Any]) -> str:
    """``"apples: float32[?, 3]"`` (``[...]``: unknown rank), as loading's TensorInfo prints it."""
    shape = tensor.get("shape")
    dims = "..." if shape is None else ", ".join("?" if d is None else str(d) for d in shape)
    return f"{shown(name)}: {tensor.get('dtype')}[{dims}]"


def shown(name: str) -> str:
    """A name from a module as it can be printed: itself, or its repr when it holds characters a
    terminal would act on (escape sequences, control characters)."""
    return name if name.isprintable() else repr(name)


def _tensor(info: Any) -> dict[str, Any]:
    dtype = _dtype(info.dtype)
    if info.WhichOneof("encoding") not in (None, "name") or not info.HasField("tensor_shape"):
        return {"dtype": dtype, "shape": None}  # sparse or composite: its dense shape is not here
    return {"dtype": dtype, "shape": _shape(info.tensor_shape)}


def _dtype(number: int) -> str:
    return DTYPES.get(number, f"unknown ({number})")


def _shape(shape: Any) -> list[int | None] | None:
    if shape.unknown_rank:
        return None
    return [None if d.size < 0 else int(d.size) for d in shape.dim]


# -- __call__: the saved object graph's function, its traces' structured signatures ------------------


class _Spec:
    """A TensorSpec (or BoundedTensorSpec) in a structured signature."""

    def __init__(self, proto: Any) -> None:
        self.name = proto.name
        self.json = {"dtype": _dtype(proto.dtype), "shape": _shape(proto.shape)}


_UNKNOWN = object()  # a value this reader does not decode (a TypeSpec such as a RaggedTensorSpec, ...)


def _value(v: Any) -> Any:
    """A StructuredValue as Python: tuples, lists, dicts, scalars, ``_Spec`` for tensor specs.
    Recursive: the parser's recursion limit (100 messages, as TensorFlow's) bounds the depth."""
    kind = v.WhichOneof("kind")
    if kind in ("tensor_spec_value", "bounded_tensor_spec_value"):
        return _Spec(getattr(v, kind))
    if kind in ("tuple_value", "list_value"):
        items = [_value(x) for x in getattr(v, kind).values]
        return tuple(items) if kind == "tuple_value" else items
    if kind == "dict_value":
        return {k: _value(x) for k, x in v.dict_value.fields.items()}
    if kind == "named_tuple_value":
        return tuple(_value(p.value) for p in v.named_tuple_value.values)
    if kind == "none_value":
        return None
    if kind in ("bool_value", "int64_value", "float64_value", "string_value"):
        return getattr(v, kind)
    return _UNKNOWN


def _call_spec(meta_graph: Any) -> dict[str, Any] | None:
    """``__call__``'s inputs and outputs, chosen as :meth:`beam_hub.signatures.CallSpec.of` does."""
    if not meta_graph.HasField("object_graph_def"):
        return None
    graph = meta_graph.object_graph_def
    if not graph.nodes:
        return None
    ref = next((c for c in graph.nodes[0].children if c.local_name == CALL), None)
    if ref is None or not 0 <= ref.node_id < len(graph.nodes):
        return None
    node = graph.nodes[ref.node_id]
    if node.WhichOneof("kind") != "function":
        return None
    traces = []
    for name in node.function.concrete_functions:
        if name not in graph.concrete_functions:
            continue
        concrete = graph.concrete_functions[name]
        signature = _value(concrete.canonicalized_input_signature)
        if not (isinstance(signature, tuple) and len(signature) == 2):
            continue
        args, kwargs = signature
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            continue
        training = any(a is True for a in list(args[1:]) + list(kwargs.values()))
        traces.append((training, args, concrete))
    if not traces:
        return None
    _training, args, concrete = sorted(traces, key=lambda t: t[0])[0]
    if not args:
        return None
    first = args[0]
    if isinstance(first, dict):
        inputs = {k: _json(v) for k, v in sorted(first.items())}
    elif isinstance(first, _Spec):
        inputs = {first.name or "inputs": first.json}
    else:
        return None
    out = _value(concrete.output_signature)
    if isinstance(out, dict):
        outputs = {k: _json(v) for k, v in sorted(out.items()) if v is not None}
    elif isinstance(out, _Spec):
        outputs = {"default": out.json}
    else:
        outputs = {}
    return {"inputs": inputs, "outputs": outputs}


def _json(value: Any) -> dict[str, Any]:
    """A tensor's dtype and shape; unknown for what is not a plain TensorSpec (never guessed)."""
    return value.json if isinstance(value, _Spec) else {"dtype": "unknown", "shape": None}
