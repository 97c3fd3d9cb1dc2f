"""beam_hub.protos declares TensorFlow's messages without TensorFlow: each field must be TensorFlow's."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from beam_hub import protos
from beam_hub.errors import NotASavedModelError

# where the reader declares a simpler type that reads the same wire bytes
_SAME_ON_THE_WIRE = {(F.TYPE_INT32, F.TYPE_ENUM), (F.TYPE_BYTES, F.TYPE_MESSAGE)}


def _tensorflow_pool():
    from google.protobuf import descriptor_pool
    from tensorflow.core.framework import graph_pb2  # noqa: F401 - registers the messages
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2, saved_object_graph_pb2  # noqa: F401

    return descriptor_pool.Default()


def _messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


def test_every_declared_field_is_tensorflows_own():
    tf_pool = _tensorflow_pool()
    ours = protos.pool()
    checked = 0
    for top in ours.FindFileByName("beam_hub/tensorflow_subset.proto").message_types_by_name.values():
        for message in _messages(top):
            theirs = tf_pool.FindMessageTypeByName(message.full_name)
            assert message.GetOptions().map_entry == theirs.GetOptions().map_entry, message.full_name
            for field in message.fields:
                their = theirs.fields_by_name.get(field.name)
                where = f"{message.full_name}.{field.name}"
                assert their is not None, f"{where}: TensorFlow has no such field"
                assert field.number == their.number, where
                assert field.is_repeated == their.is_repeated, where
                if field.type != their.type:
                    assert (field.type, their.type) in _SAME_ON_THE_WIRE, where
                elif field.message_type is not None:
                    assert field.message_type.full_name == their.message_type.full_name, where
                elif field.enum_type is not None:
                    assert field.enum_type.full_name == their.enum_type.full_name, where
                ours_oneof = field.containing_oneof.name if field.containing_oneof else None
                theirs_oneof = their.containing_oneof.name if their.containing_oneof else None
                assert ours_oneof == theirs_oneof, where
                checked += 1
    assert checked > 80  # every message above, not a few


def test_the_data_type_enum_is_tensorflows():
    from tensorflow.core.framework import types_pb2

    ours = protos.pool().FindEnumTypeByName("tensorflow.DataType")
    assert {(v.name, v.number) for v in ours.values} == {
        (v.name, v.number) for v in types_pb2.DataType.DESCRIPTOR.values
    }


def test_a_saved_model_reads_the_same_as_with_tensorflows_classes(modules_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    data = open(f"{modules_dir['fruit']}/saved_model.pb", "rb").read()
    theirs = saved_model_pb2.SavedModel.FromString(data)
    ours = protos.message_class("SavedModel").FromString(data)
    for mine, tf_graph in zip(ours.meta_graphs, theirs.meta_graphs, strict=True):
        assert [n.op for n in mine.graph_def.node] == [n.op for n in tf_graph.graph_def.node]
        assert sorted(f.signature.name for f in mine.graph_def.library.function) == sorted(
            f.signature.name for f in tf_graph.graph_def.library.function
        )
        assert len(mine.object_graph_def.nodes) == len(tf_graph.object_graph_def.nodes)
        assert sorted(mine.signature_def) == sorted(tf_graph.signature_def)


def test_declaring_them_imports_no_tensorflow():
    code = (
        "import sys; from beam_hub import protos; protos.message_class('SavedModel'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_text_format_saved_model_reads_as_its_binary_twin(modules_dir, tmp_path):
    """TensorFlow also loads saved_model.pbtxt: the reader takes it (fields it does not declare skipped)."""
    import shutil

    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    from beam_hub.signature_defs import read_signatures

    module = shutil.copytree(modules_dir["fruit"], tmp_path / "fruit")
    data = (module / "saved_model.pb").read_bytes()
    (module / "saved_model.pb").unlink()
    (module / "saved_model.pbtxt").write_text(
        text_format.MessageToString(saved_model_pb2.SavedModel.FromString(data))
    )
    binary = protos.message_class("SavedModel").FromString(data)
    binary.DiscardUnknownFields()  # the fields not declared: kept from binary, skipped in text
    assert protos.read_saved_model(module) == binary
    assert read_signatures(module) == read_signatures(modules_dir["fruit"])


@pytest.mark.parametrize("name", ["saved_model.pb", "saved_model.pbtxt"])
def test_a_damaged_graph_file_is_one_clear_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x12\xff\xff\xff\xff\x0f" if name.endswith(".pb") else b"meta_graphs {")
    with pytest.raises(NotASavedModelError, match="does not parse .*beam-hub cache verify"):
        protos.read_saved_model(tmp_path)
    with pytest.raises(NotASavedModelError, match="has no saved_model.pb"):
        protos.read_saved_model(tmp_path / "elsewhere")
