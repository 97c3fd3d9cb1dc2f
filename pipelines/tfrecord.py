"""TFRecord files: their framing (read and written, with TensorFlow's masked CRC-32C), the
embedding job's output records (tf.train.Examples ``{id, embedding}`` encoded a table at a
time) and a sink that writes a block of records per Beam element.

Each record is the protobuf a ``tf.train.Example`` with these two features serializes to (its
wire format, written directly: the embedding row's float32 bytes are copied into a fixed frame,
no Python float per value), so ``tf.train.Example.FromString`` and ``tf.io.parse_example`` read
it as they read TensorFlow's own::

    Example      1: Features       (message)
    Features     1: map entry      (repeated: key 1 = name, value 2 = Feature)
    Feature      1: BytesList | 2: FloatList | 3: Int64List
    *List        1: values         (packed for floats and ints)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import google_crc32c
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes

MAX_RECORD_BYTES = 256 << 20  #: a TFRecord claiming more is corrupt


def _varint_of(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_SMALL: list[bytes] = []  # varints below 16 KiB (field lengths, tags), made on the first encode


def _varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint."""
    return _SMALL[n] if n < len(_SMALL) else _varint_of(n)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(name: str, feature: bytes) -> bytes:
    """A Features map entry (field 1 of Features) for ``name`` -> ``feature``."""
    return _field(1, _field(1, name.encode()) + _field(2, feature))


def _id_feature(ident: Any) -> bytes:
    """An id as the job has always written it: an integer as int64, bytes as they are, anything
    else as its text."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return _field(3, _field(1, _varint(ident & 0xFFFFFFFFFFFFFFFF)))  # int64: two's complement
    raw = ident if isinstance(ident, bytes) else str(ident).encode()
    return _field(1, _field(1, raw))


def _float_feature(values: bytes) -> bytes:
    return _field(2, _field(1, values) if values else b"")


def encode(ids: list[Any], embedding: Any) -> Iterator[bytes]:
    """Each row's serialized tf.Example: ``id`` (from ``ids``) and ``embedding`` (an Arrow list
    column of floats, stored as float32)."""
    import numpy as np
    import pyarrow.compute as pc

    if not _SMALL:  # not at import: every job imports this module, few write TFRecords
        _SMALL[:] = [_varint_of(n) for n in range(1 << 14)]  # whole at once: threads may race here
    array = embedding.combine_chunks() if hasattr(embedding, "combine_chunks") else embedding
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype("<f4").tobytes()
    ends = np.cumsum(lengths, dtype=np.int64) * 4
    starts = ends - lengths * 4
    width = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and width and (lengths == width).all():
        # every row the same width (a module's output): the entry is a fixed frame, then the row
        frame = _entry("embedding", _float_feature(b"\0" * 4 * width))[: -4 * width]
        for ident, lo, hi in zip(ids, starts.tolist(), ends.tolist(), strict=True):
            body = _entry("id", _id_feature(ident)) + frame + flat[lo:hi]
            yield _field(1, body)
        return
    for ident, lo, hi in zip(ids, starts.tolist(), ends.tolist(), strict=True):
        body = _entry("id", _id_feature(ident)) + _entry("embedding", _float_feature(flat[lo:hi]))
        yield _field(1, body)


class TFRecordBlocks(FileBasedSink):
    """Beam's TFRecord sink (the same shard names; TensorFlow's framing), a list of records per element."""

    def __init__(self, prefix: str) -> None:
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=".tfrecord",
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.AUTO,
        )

    def write_record(self, file_handle: Any, value: list[bytes]) -> None:
        file_handle.write(b"".join(frame(record) for record in value))


def frame(record: bytes) -> bytes:
    """One TFRecord: length (uint64 LE), its masked CRC-32C, the record, the record's masked CRC."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc(length)) + record + struct.pack("<I", masked_crc(record))


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(f: Any) -> Iterator[bytes]:
    """The records of a TFRecord file; ValueError naming the record where the framing breaks."""
    index = 0
    while header := f.read(12):
        if len(header) < 12:
            raise ValueError(f"record {index} is cut short (a {len(header)}-byte header)")
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc(header[:8]) != length_crc:
            raise ValueError(f"record {index} has a corrupt length")
        if length > MAX_RECORD_BYTES:
            raise ValueError(f"record {index} claims {length} bytes (more than {MAX_RECORD_BYTES})")
        data = f.read(length)
        crc = f.read(4)
        if len(data) < length or len(crc) < 4:
            raise ValueError(f"record {index} is cut short")
        if masked_crc(data) != struct.unpack("<I", crc)[0]:
            raise ValueError(f"record {index} fails its checksum")
        yield data
        index += 1
