"""TensorFlow's SavedModel protobufs, declared here for the fields beam-hub reads: no TensorFlow import.

``import tensorflow.core.protobuf.saved_model_pb2`` runs TensorFlow's package ``__init__`` (seconds,
hundreds of MB). Reading a module's signatures and auditing its graphs need only a few fields, so
the messages below are declared with TensorFlow's own full names and field numbers (checked
against TensorFlow's descriptors in tests/test_protos.py) in a private descriptor pool. Fields not
declared are skipped by the parser (binary) or ignored (text format)::

    SavedModel            2 meta_graphs
    MetaGraphDef          1 meta_info_def  2 graph_def  3 saver_def  4 collection_def (map)
                          5 signature_def (map)  6 asset_file_def  7 object_graph_def
    GraphDef              1 node  2 library          FunctionDefLibrary  1 function
    FunctionDef           1 signature (OpDef: 1 name, 2 input_arg: 1 name)  3 node_def
    NodeDef               1 name  2 op  3 input  5 attr (map<string, AttrValue>)
    AttrValue             oneof value: 1 list (ListValue: 9 func)  2 s  8 tensor  10 func
    SavedObjectGraph      1 nodes  2 concrete_functions (map<string, SavedConcreteFunction>)
    SavedObject           1 children; oneof kind: 4 user_object  5 asset  6 function
                          8 bare_concrete_function (others: unknown to this reader)
    SavedConcreteFunction 2 bound_inputs  3 canonicalized_input_signature  4 output_signature
    StructuredValue       oneof kind: 1 none  11 float64  12 int64  13 string  14 bool
                          31 tensor_shape  32 tensor_dtype  33 tensor_spec  34 type_spec
                          35 bounded_tensor_spec  51 list  52 tuple  53 dict  54 named_tuple

DataType is declared as TensorFlow's enum (``DATA_TYPES``); fields hold its number.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from beam_hub.errors import NotASavedModelError

MAX_GRAPH_BYTES = 1 << 30  # protobuf refuses messages over 2 GiB; a saved_model.pb this large is not one
PACKAGE = "tensorflow"  # TensorFlow's own full names, so that Any's type URLs match
_T = descriptor_pb2.FieldDescriptorProto
_STR, _BYTES, _BOOL = _T.TYPE_STRING, _T.TYPE_BYTES, _T.TYPE_BOOL
_I32, _I64, _S64, _F64, _MSG = _T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_DOUBLE, _T.TYPE_MESSAGE
_ENUM = _T.TYPE_ENUM

#: TensorFlow's DataType enum (types.proto), by number; each but DT_INVALID also as NAME_REF at 100 + n.
#: An enum, not an int, so that text-format graphs (``dtype: DT_FLOAT``) parse; numbers not listed
#: here still read as numbers (proto3 enums are open).
DATA_TYPES = (
    "DT_INVALID DT_FLOAT DT_DOUBLE DT_INT32 DT_UINT8 DT_INT16 DT_INT8 DT_STRING DT_COMPLEX64 DT_INT64 "
    "DT_BOOL DT_QINT8 DT_QUINT8 DT_QINT32 DT_BFLOAT16 DT_QINT16 DT_QUINT16 DT_UINT16 DT_COMPLEX128 DT_HALF "
    "DT_RESOURCE DT_VARIANT DT_UINT32 DT_UINT64 DT_FLOAT8_E5M2 DT_FLOAT8_E4M3FN DT_FLOAT8_E4M3FNUZ "
    "DT_FLOAT8_E4M3B11FNUZ DT_FLOAT8_E5M2FNUZ DT_INT4 DT_UINT4 DT_INT2 DT_UINT2 DT_FLOAT4_E2M1FN"
).split()

# message -> [(field, number, type, message type or "", repeated, oneof or "")]; "map:V" is map<string, V>
_MESSAGES: dict[str, list[tuple[str, int, int, str, bool, str]]] = {
    "TensorShapeProto": [
        ("dim", 2, _MSG, "TensorShapeProto.Dim", True, ""),
        ("unknown_rank", 3, _BOOL, "", False, ""),
    ],
    "TensorShapeProto.Dim": [("size", 1, _I64, "", False, ""), ("name", 2, _STR, "", False, "")],
    "TensorProto": [("dtype", 1, _ENUM, "DataType", False, ""), ("string_val", 8, _BYTES, "", True, "")],
    "TensorInfo": [
        ("name", 1, _STR, "", False, "encoding"),
        ("dtype", 2, _ENUM, "DataType", False, ""),
        ("tensor_shape", 3, _MSG, "TensorShapeProto", False, ""),
        ("coo_sparse", 4, _BYTES, "", False, "encoding"),  # present or not is all that is read
        ("composite_tensor", 5, _BYTES, "", False, "encoding"),
    ],
    "SignatureDef": [
        ("inputs", 1, _MSG, "map:TensorInfo", True, ""),
        ("outputs", 2, _MSG, "map:TensorInfo", True, ""),
        ("method_name", 3, _STR, "", False, ""),
    ],
    "NameAttrList": [("name", 1, _STR, "", False, ""), ("attr", 2, _MSG, "map:AttrValue", True, "")],
    "AttrValue": [
        ("list", 1, _MSG, "AttrValue.ListValue", False, "value"),
        ("s", 2, _BYTES, "", False, "value"),
        ("tensor", 8, _MSG, "TensorProto", False, "value"),
        ("func", 10, _MSG, "NameAttrList", False, "value"),
    ],
    "AttrValue.ListValue": [("func", 9, _MSG, "NameAttrList", True, "")],
    "NodeDef": [
        ("name", 1, _STR, "", False, ""),
        ("op", 2, _STR, "", False, ""),
        ("input", 3, _STR, "", True, ""),
        ("attr", 5, _MSG, "map:AttrValue", True, ""),
    ],
    "OpDef": [("name", 1, _STR, "", False, ""), ("input_arg", 2, _MSG, "OpDef.ArgDef", True, "")],
    "OpDef.ArgDef": [("name", 1, _STR, "", False, "")],
    "FunctionDef": [("signature", 1, _MSG, "OpDef", False, ""), ("node_def", 3, _MSG, "NodeDef", True, "")],
    "FunctionDefLibrary": [("function", 1, _MSG, "FunctionDef", True, "")],
    "GraphDef": [
        ("node", 1, _MSG, "NodeDef", True, ""),
        ("library", 2, _MSG, "FunctionDefLibrary", False, ""),
    ],
    "SaverDef": [
        ("filename_tensor_name", 1, _STR, "", False, ""),
        ("save_tensor_name", 2, _STR, "", False, ""),
        ("restore_op_name", 3, _STR, "", False, ""),
    ],
    "CollectionDef": [
        ("node_list", 1, _MSG, "CollectionDef.NodeList", False, "kind"),
        ("any_list", 5, _MSG, "CollectionDef.AnyList", False, "kind"),
    ],
    "CollectionDef.NodeList": [("value", 1, _STR, "", True, "")],
    "CollectionDef.AnyList": [("value", 1, _MSG, ".google.protobuf.Any", True, "")],
    "AssetFileDef": [("tensor_info", 1, _MSG, "TensorInfo", False, ""), ("filename", 2, _STR, "", False, "")],
    "MetaGraphDef": [
        ("meta_info_def", 1, _MSG, "MetaGraphDef.MetaInfoDef", False, ""),
        ("graph_def", 2, _MSG, "GraphDef", False, ""),
        ("saver_def", 3, _MSG, "SaverDef", False, ""),
        ("collection_def", 4, _MSG, "map:CollectionDef", True, ""),
        ("signature_def", 5, _MSG, "map:SignatureDef", True, ""),
        ("asset_file_def", 6, _MSG, "AssetFileDef", True, ""),
        ("object_graph_def", 7, _MSG, "SavedObjectGraph", False, ""),
    ],
    "MetaGraphDef.MetaInfoDef": [("tags", 4, _STR, "", True, "")],
    "SavedModel": [("meta_graphs", 2, _MSG, "MetaGraphDef", True, "")],
    "SavedObjectGraph": [
        ("nodes", 1, _MSG, "SavedObject", True, ""),
        ("concrete_functions", 2, _MSG, "map:SavedConcreteFunction", True, ""),
    ],
    "SavedObject": [
        ("children", 1, _MSG, "TrackableObjectGraph.TrackableObject.ObjectReference", True, ""),
        ("user_object", 4, _MSG, "SavedUserObject", False, "kind"),
        ("asset", 5, _MSG, "SavedAsset", False, "kind"),
        ("function", 6, _MSG, "SavedFunction", False, "kind"),
        ("bare_concrete_function", 8, _MSG, "SavedBareConcreteFunction", False, "kind"),
    ],
    "TrackableObjectGraph": [],
    "TrackableObjectGraph.TrackableObject": [],
    "TrackableObjectGraph.TrackableObject.ObjectReference": [
        ("node_id", 1, _I32, "", False, ""),
        ("local_name", 2, _STR, "", False, ""),
    ],
    "SavedUserObject": [("identifier", 1, _STR, "", False, "")],
    "SavedAsset": [("asset_file_def_index", 1, _I32, "", False, "")],
    "SavedFunction": [("concrete_functions", 1, _STR, "", True, "")],
    "SavedBareConcreteFunction": [("concrete_function_name", 1, _STR, "", False, "")],
    "SavedConcreteFunction": [
        ("bound_inputs", 2, _I32, "", True, ""),
        ("canonicalized_input_signature", 3, _MSG, "StructuredValue", False, ""),
        ("output_signature", 4, _MSG, "StructuredValue", False, ""),
    ],
    "StructuredValue": [
        ("none_value", 1, _MSG, "NoneValue", False, "kind"),
        ("float64_value", 11, _F64, "", False, "kind"),
        ("int64_value", 12, _S64, "", False, "kind"),
        ("string_value", 13, _STR, "", False, "kind"),
        ("bool_value", 14, _BOOL, "", False, "kind"),
        ("tensor_shape_value", 31, _MSG, "TensorShapeProto", False, "kind"),
        ("tensor_dtype_value", 32, _ENUM, "DataType", False, "kind"),
        ("tensor_spec_value", 33, _MSG, "TensorSpecProto", False, "kind"),
        ("type_spec_value", 34, _MSG, "TypeSpecProto", False, "kind"),
        ("bounded_tensor_spec_value", 35, _MSG, "BoundedTensorSpecProto", False, "kind"),
        ("list_value", 51, _MSG, "ListValue", False, "kind"),
        ("tuple_value", 52, _MSG, "TupleValue", False, "kind"),
        ("dict_value", 53, _MSG, "DictValue", False, "kind"),
        ("named_tuple_value", 54, _MSG, "NamedTupleValue", False, "kind"),
    ],
    "NoneValue": [],
    "TypeSpecProto": [("type_spec_class_name", 3, _STR, "", False, "")],
    "ListValue": [("values", 1, _MSG, "StructuredValue", True, "")],
    "TupleValue": [("values", 1, _MSG, "StructuredValue", True, "")],
    "DictValue": [("fields", 1, _MSG, "map:StructuredValue", True, "")],
    "PairValue": [("key", 1, _STR, "", False, ""), ("value", 2, _MSG, "StructuredValue", False, "")],
    "NamedTupleValue": [("name", 1, _STR, "", False, ""), ("values", 2, _MSG, "PairValue", True, "")],
    "TensorSpecProto": [
        ("name", 1, _STR, "", False, ""),
        ("shape", 2, _MSG, "TensorShapeProto", False, ""),
        ("dtype", 3, _ENUM, "DataType", False, ""),
    ],
    "BoundedTensorSpecProto": [
        ("name", 1, _STR, "", False, ""),
        ("shape", 2, _MSG, "TensorShapeProto", False, ""),
        ("dtype", 3, _ENUM, "DataType", False, ""),
    ],
}


def _type_name(name: str) -> str:
    return name if name.startswith(".") else f".{PACKAGE}.{name}"


@cache
def pool() -> descriptor_pool.DescriptorPool:
    """A private descriptor pool holding the messages above (and google.protobuf.Any)."""
    from google.protobuf import any_pb2

    f = descriptor_pb2.FileDescriptorProto(
        name="beam_hub/tensorflow_subset.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    data_type = f.enum_type.add(name="DataType")
    for number, name in enumerate(DATA_TYPES):
        data_type.value.add(name=name, number=number)
    for number, name in enumerate(DATA_TYPES[1:], start=101):
        data_type.value.add(name=f"{name}_REF", number=number)
    declared: dict[str, Any] = {}
    for full in sorted(_MESSAGES, key=lambda n: n.count(".")):  # outer messages before nested ones
        outer, _, inner = full.rpartition(".")
        parent = declared[outer].nested_type if outer else f.message_type
        declared[full] = parent.add(name=inner or full)
    for full, fields in _MESSAGES.items():
        message = declared[full]
        oneofs: list[str] = []
        for name, number, kind, type_name, repeated, oneof in fields:
            field = message.field.add(
                name=name,
                number=number,
                type=kind,
                label=_T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL,
            )
            if type_name.startswith("map:"):  # map<string, V>: a nested entry message, as protoc makes it
                entry = message.nested_type.add(name="".join(p.title() for p in name.split("_")) + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_STR, label=_T.LABEL_OPTIONAL)
                entry.field.add(
                    name="value",
                    number=2,
                    type=_MSG,
                    label=_T.LABEL_OPTIONAL,
                    type_name=_type_name(type_name[4:]),
                )
                field.type_name = f"{_type_name(full)}.{entry.name}"
            elif type_name:
                field.type_name = _type_name(type_name)
            if oneof:
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    message.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs.index(oneof)
    result = descriptor_pool.DescriptorPool()
    result.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    result.Add(f)
    return result


@cache
def message_class(name: str) -> Any:
    """The message class of ``tensorflow.NAME`` (e.g. ``"SavedModel"``, ``"GraphDef"``)."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


def read_saved_model(module_dir: str | os.PathLike) -> Any:
    """The ``tensorflow.SavedModel`` of ``module_dir`` (``saved_model.pb``, else ``.pbtxt``), in the
    fields declared here. NotASavedModelError, saying what to do, when it is missing, too large or
    does not parse."""
    root = os.fspath(module_dir)
    binary, text = os.path.join(root, "saved_model.pb"), os.path.join(root, "saved_model.pbtxt")
    path = binary if os.path.isfile(binary) else text
    try:
        size = os.path.getsize(path)
    except OSError:
        raise NotASavedModelError(
            f"{root} has no saved_model.pb: it is not a SavedModel directory."
        ) from None
    if size > MAX_GRAPH_BYTES:
        raise NotASavedModelError(f"{path} is {size} bytes, larger than any SavedModel protobuf can be.")
    saved = message_class("SavedModel")()
    try:
        if path == binary:
            with open(path, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(path, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved, allow_unknown_field=True, descriptor_pool=pool())
    except (DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
        raise NotASavedModelError(
            f"{path} does not parse ({type(e).__name__}: {e}): it is damaged or not a SavedModel "
            "protobuf. If it is a cache entry, `beam-hub cache verify` removes damaged entries."
        ) from None
    return saved
