"""beam_hub.protos declares TensorFlow's messages without TensorFlow: each field must be TensorFlow's."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf.descriptor import FieldDescriptor as F

from beam_hub import protos

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
                ours_oneof = field.containing_oneof.name if field.containing_oneof else None
                theirs_oneof = their.containing_oneof.name if their.containing_oneof else None
                assert ours_oneof == theirs_oneof, where
                checked += 1
    assert checked > 80  # every message above, not a few


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
