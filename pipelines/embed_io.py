"""The embedding job's files: checking the output prefix, input schemas, the sinks, and staging
that a failed job must not leave behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_hub.download import filesystem
from beam_hub.urls import is_remote_url
from pipelines import tfrecord
from pipelines.ahead import WriteBehind
from pipelines.blocks import MISFIT, RECORD
from pipelines.tfrecord import TFRecordBlocks

_KINDS = ("bytes_list", "int64_list", "float_list")


# --- before the job -----------------------------------------------------------------------------


def check_prefix(prefix: str) -> None:
    """ValueError (one line) unless output files can be written under the local ``prefix``."""
    if is_remote_url(prefix):
        return  # the runner's file system reports what it cannot write
    directory = os.path.dirname(os.path.abspath(prefix))
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"--output {prefix!r}: {existing} is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".beam-hub-probe-"):
            pass
    except OSError as e:
        raise ValueError(f"--output {prefix!r}: cannot write in {directory} ({e.strerror})") from None


def require_column(csv_path: str, field: str) -> None:
    import csv
    import io

    with FileSystems.open(csv_path) as raw:
        header = next(
            csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")), []
        )
    if field not in header:
        raise ValueError(f"{csv_path} has no column {field!r} (columns: {header}); pass --text-field")


def parquet_schema(path: str, text_field: str) -> Any:
    """The first Parquet file's schema plus ``embedding`` (the output's schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        schema = pq.read_schema(f)
    if text_field not in schema.names:
        raise ValueError(f"{path} has no column {text_field!r} (columns: {schema.names}); pass --text-field")
    return schema.append(pa.field("embedding", pa.list_(pa.float32())))


def tfrecord_features(path: str, text_field: str, id_field: str) -> dict[str, str]:
    """The text and id features of the first tf.Example, with their kinds (``bytes_list``, ...)."""
    from beam_hub.examples import feature_kinds

    with FileSystems.open(path) as f:
        try:
            first = next(tfrecord.records(f), None)
        except ValueError as e:
            raise ValueError(f"{path}: corrupt TFRecord file ({e})") from None
    if first is None:
        raise ValueError(f"{path} holds no records")
    kinds = feature_kinds(first)
    if text_field not in kinds:
        raise ValueError(
            f"the tf.Examples in {path} have no feature {text_field!r} (features: {sorted(kinds)}); pass --text-field"
        )
    return {name: kinds[name] for name in (id_field, text_field) if kinds.get(name) in _KINDS}


def tfrecord_schema(features: dict[str, str]) -> Any:
    import pyarrow as pa

    types = {"bytes_list": pa.large_binary(), "int64_list": pa.int64(), "float_list": pa.float32()}
    fields = [pa.field(name, types[kind]) for name, kind in features.items()]
    return pa.schema([*fields, pa.field("embedding", pa.list_(pa.float32()))])


def row_schema(fmt: str, paths: list[str], text_field: str, several: bool) -> Any:
    """The Parquet schema for records from text formats: text and CSV records are fixed; JSONL
    records are sampled from the first file (bad lines skipped)."""
    import pyarrow as pa

    if fmt == "text":
        fields = [pa.field("id", pa.int64())] + ([pa.field("file", pa.string())] if several else [])
    elif fmt == "csv":
        fields = [pa.field("id", pa.string())]
    else:
        sample = list(_json_sample(paths[0], text_field))
        fields = [f for f in (pa.Table.from_pylist(sample).schema if sample else []) if f.name != "embedding"]
    return pa.schema([*fields, pa.field("embedding", pa.list_(pa.float32()))])


def read_schema(schema: Any, text_field: str, keep: Sequence[str] | None = None) -> Any:
    """The schema JSONL records are read into: the output's without ``embedding`` (only the
    ``keep`` fields, when given), with the text field as a string."""
    import pyarrow as pa

    fields = [f for f in schema if f.name != "embedding" and (keep is None or f.name in keep)]
    if text_field not in [f.name for f in fields]:
        fields.append(pa.field(text_field, pa.string()))
    return pa.schema(fields)


def _json_sample(path: str, text_field: str, n: int = 200) -> Iterator[dict[str, Any]]:
    found = 0
    with FileSystems.open(path) as f:
        for raw in iter(f.readline, b""):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get(text_field), str):
                yield record
                found += 1
                if found >= n:
                    return


# --- the sinks ----------------------------------------------------------------------------------


def write_tables(tables: beam.PCollection, prefix: str, schema: Any) -> None:
    """Write Arrow ``tables`` as Parquet shards ``PREFIX-SSSSS-of-NNNNN.parquet``."""
    tables | "Write" >> beam.io.Write(_ParquetTables(prefix, schema))


class _ParquetTables(FileBasedSink):
    """Beam's Parquet sink (WriteToParquetBatched: uncompressed, Beam's shard names), but the
    ``embedding`` column written without dictionary encoding or statistics: pyarrow's defaults
    try a dictionary of every float and give it up page by page, which made writing 5x slower
    (40 ms against 8 ms per 8,192 rows of 64 floats) and the file larger (2.8 MB against 2.2 MB)."""

    def __init__(self, prefix: str, schema: Any) -> None:
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=".parquet",
            mime_type="application/x-parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )
        self._schema = schema

    def open(self, temp_path: str) -> Any:
        import pyarrow.parquet as pq

        handle = super().open(temp_path)
        plain = [name for name in self._schema.names if name != "embedding"]
        writer = pq.ParquetWriter(
            handle, self._schema, compression="none", use_dictionary=plain, write_statistics=plain
        )
        # written on a second thread (pyarrow releases the GIL) while the next table is embedded
        return writer, WriteBehind(writer.write_table), handle

    def write_record(self, file_handle: Any, value: Any) -> None:
        file_handle[1].put(value)

    def close(self, file_handle: Any) -> None:
        writer, behind, handle = file_handle
        try:
            behind.close()
            writer.close()
        finally:
            handle.close()


def write_jsonl_tables(tables: beam.PCollection, prefix: str, id_field: str, count: Any) -> None:
    """Write embedded tables as JSONL shards, a line ``{"id": ..., "embedding": [...]}`` per row;
    each table becomes one block of lines (one Beam element, not one per row); ``count(block, n)``
    sees each block and its rows."""
    blocks = (
        tables
        | "ToJson" >> beam.FlatMap(_jsonl_block, id_field)
        | "Count" >> beam.Map(lambda block: count(block[0], block[1]))
    )
    blocks | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")


def _jsonl_block(table: Any, id_field: str) -> Iterator[tuple[str, int]]:
    """The table's lines joined by newlines (WriteToText ends the last), and how many."""
    if not table.num_rows:
        return
    lines = [
        '{"id": '
        + json.dumps(
            ident.decode("utf-8", "replace") if isinstance(ident, bytes) else ident,
            ensure_ascii=False,
            default=str,
        )
        + ', "embedding": '
        + vector
        + "}"
        for ident, vector in zip(_ids(table, id_field), _json_vectors(table.column("embedding")), strict=True)
    ]
    yield "\n".join(lines), table.num_rows


def _ids(table: Any, id_field: str) -> list[Any]:
    """Each embedded row's id (None without the id column); a JSONL record read with only its
    text (MISFIT) has its id in its line."""
    ids = table.column(id_field).to_pylist() if id_field in table.column_names else [None] * table.num_rows
    if MISFIT in table.column_names:
        misfits = zip(table.column(MISFIT).to_pylist(), table.column(RECORD).to_pylist(), strict=True)
        for i, (why, raw) in enumerate(misfits):
            if why is not None:
                ids[i] = json.loads(raw).get(id_field)
    return ids


def _json_vectors(column: Any) -> list[str]:
    """Each row's embedding as a JSON array. orjson writes the float32 values widened to float64
    (the numbers ``json.dumps`` wrote, in 1/14 of the time: 3 against 44 us a row of 64), from
    one numpy matrix when every row has the same length (what a module's batch output is)."""
    import numpy as np
    import orjson
    import pyarrow.compute as pc

    array = column.combine_chunks()
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if array.null_count or not len(array) or (lengths != lengths[0]).any():
        return [orjson.dumps(vector).decode() for vector in array.to_pylist()]
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.float64)
    matrix = flat.reshape(len(array), int(lengths[0]))
    return [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode() for row in matrix]


def write_example_tables(tables: beam.PCollection, prefix: str, id_field: str, count: Any) -> None:
    """Write embedded tables as TFRecord shards of tf.train.Examples with ``id`` and
    ``embedding``; each table's records are one Beam element; ``count(block, n)`` sees each."""
    blocks = (
        tables
        | "ToExamples" >> beam.FlatMap(_example_block, id_field)
        | "Count" >> beam.Map(lambda block: count(block[0], block[1]))
    )
    blocks | "Write" >> beam.io.Write(TFRecordBlocks(prefix))


def _example_block(table: Any, id_field: str) -> Iterator[tuple[list[bytes], int]]:
    if table.num_rows:
        yield list(tfrecord.encode(_ids(table, id_field), table.column("embedding"))), table.num_rows


# --- after the job ------------------------------------------------------------------------------


def total_bytes(pattern: str) -> int:
    """The size of every file ``pattern`` matches (for the progress line's ETA)."""
    return sum(m.size_in_bytes or 0 for r in FileSystems.match([pattern]) for m in r.metadata_list)


def matches(pattern: str) -> list[str]:
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def remove(pattern: str) -> None:
    paths = matches(pattern)
    if paths:
        FileSystems.delete(paths)


def _staging(prefix: str) -> set[str]:
    """The beam-temp-* directories Beam's file sinks stage ``prefix``'s shards in."""
    fs, path = filesystem(prefix)
    parent, base = os.path.split(path.rstrip("/"))
    try:
        return set(fs.glob(f"{parent}/beam-temp-{base}*"))
    except (FileNotFoundError, OSError):
        return set()


@contextlib.contextmanager
def staging_removed_on_failure(prefix: str) -> Iterator[None]:
    """Whatever ends the job, no beam-temp-* staging it created is left under the output."""
    before = _staging(prefix)
    try:
        yield
    except BaseException:
        fs, _ = filesystem(prefix)
        for stale in _staging(prefix) - before:
            with contextlib.suppress(OSError):
                fs.rm(stale, recursive=True)
        raise
