"""A module's signatures read from its ``saved_model.pb`` alone: no TensorFlow import, no load.

The SavedModel protobuf is parsed with message classes declared here for the few fields that
carry signatures (unknown fields are skipped by the parser), with field numbers as TensorFlow's
own ``.proto`` files give them::

    SavedModel        2: meta_graphs (repeated MetaGraphDef)
    MetaGraphDef      1: meta_info_def   5: signature_def (map<string, SignatureDef>)
    MetaInfoDef       4: tags (repeated string)
    SignatureDef      1: inputs   2: outputs (map<string, TensorInfo>)   3: method_name
    TensorInfo        1: name   2: dtype (DataType)   3: tensor_shape   4: coo_sparse   5: composite_tensor
    TensorShapeProto  2: dim (repeated Dim: 1 size, 2 name)   3: unknown_rank

What a protobuf cannot tell is reported as unknown, never guessed: a dtype number this table does
not name is ``"unknown (N)"``; a sparse or composite tensor's shape is ``None``. The result has
the form of :meth:`beam_hub.signatures.SignatureSpec.to_json` (dims ``None`` where unknown).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from beam_hub.errors import NotASavedModelError

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
MAX_GRAPH_BYTES = 1 << 30  # protobuf refuses messages over 2 GiB; a saved_model.pb this large is not one
_PACKAGE = "beam_hub_signatures"
_INTERNAL = ("__saved_model_init_op", "__saved_model_train_op")  # TensorFlow's own, not signatures to call

_T = descriptor_pb2.FieldDescriptorProto


def _field(
    message: Any, name: str, number: int, kind: int, type_name: str = "", repeated: bool = False
) -> None:
    label = _T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name


def _map(message: Any, name: str, number: int, value_type: str) -> None:
    entry = message.nested_type.add(name=name.title().replace("_", "") + "Entry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _T.TYPE_STRING)
    _field(entry, "value", 2, _T.TYPE_MESSAGE, value_type)
    _field(message, name, number, _T.TYPE_MESSAGE, f"{message.name}.{entry.name}", repeated=True)


@cache
def _saved_model_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto3")
    p = f".{_PACKAGE}."
    shape = f.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _T.TYPE_INT64)
    _field(dim, "name", 2, _T.TYPE_STRING)
    _field(shape, "dim", 2, _T.TYPE_MESSAGE, p + "TensorShapeProto.Dim", repeated=True)
    _field(shape, "unknown_rank", 3, _T.TYPE_BOOL)
    info = f.message_type.add(name="TensorInfo")
    _field(info, "name", 1, _T.TYPE_STRING)
    _field(info, "dtype", 2, _T.TYPE_INT32)  # an enum on the wire is a varint: read its number
    _field(info, "tensor_shape", 3, _T.TYPE_MESSAGE, p + "TensorShapeProto")
    _field(info, "coo_sparse", 4, _T.TYPE_BYTES)  # present or not is all that is used
    _field(info, "composite_tensor", 5, _T.TYPE_BYTES)
    signature = f.message_type.add(name="SignatureDef")
    _map(signature, "inputs", 1, p + "TensorInfo")
    _map(signature, "outputs", 2, p + "TensorInfo")
    _field(signature, "method_name", 3, _T.TYPE_STRING)
    meta_info = f.message_type.add(name="MetaInfoDef")
    _field(meta_info, "tags", 4, _T.TYPE_STRING, repeated=True)
    meta_graph = f.message_type.add(name="MetaGraphDef")
    _field(meta_graph, "meta_info_def", 1, _T.TYPE_MESSAGE, p + "MetaInfoDef")
    _map(meta_graph, "signature_def", 5, p + "SignatureDef")
    saved = f.message_type.add(name="SavedModel")
    _field(saved, "meta_graphs", 2, _T.TYPE_MESSAGE, p + "MetaGraphDef", repeated=True)
    for message in f.message_type:  # map entries are named relative to their message
        for field in message.field:
            if field.type_name and not field.type_name.startswith("."):
                field.type_name = p + field.type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.SavedModel"))


def read_signature_defs(module_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every signature of every meta graph (tag set) in ``module_dir``'s ``saved_model.pb``:
    ``{name: {"inputs": {...}, "outputs": {...}, "method": ..., "tags": [...]}}``, each input and
    output ``{"dtype": "float32", "shape": [None, 3]}`` (shape ``None``: unknown rank). Where two
    meta graphs name the same signature, the first (TensorFlow's default tag set comes first) wins.
    NotASavedModelError when the file is missing or is not a SavedModel."""
    path = os.path.join(os.fspath(module_dir), "saved_model.pb")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise NotASavedModelError(f"{module_dir} has no saved_model.pb") from None
    if size > MAX_GRAPH_BYTES:
        raise NotASavedModelError(f"{path} is {size} bytes, larger than any SavedModel protobuf can be")
    with open(path, "rb") as f:
        data = f.read()
    saved = _saved_model_class()()
    try:
        saved.ParseFromString(data)
    except DecodeError as e:
        raise NotASavedModelError(f"{path} is not a SavedModel protobuf ({e})") from None
    found: dict[str, dict[str, Any]] = {}
    for meta_graph in saved.meta_graphs:
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
    return found


def _tensor(info: Any) -> dict[str, Any]:
    dtype = DTYPES.get(info.dtype, f"unknown ({info.dtype})")
    if info.coo_sparse or info.composite_tensor or not info.HasField("tensor_shape"):
        return {"dtype": dtype, "shape": None}
    shape = info.tensor_shape
    if shape.unknown_rank:
        return {"dtype": dtype, "shape": None}
    return {"dtype": dtype, "shape": [None if d.size < 0 else int(d.size) for d in shape.dim]}
