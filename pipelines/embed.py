"""The batch embedding job: texts in, one embedding per text out.

    beam-hub embed --input PATTERN --output PREFIX [--module HANDLE] [--format parquet|jsonl|tfrecord]
                   [--text-field text] [--id-field id] [any Beam pipeline option]

Inputs (by extension, or --input-format): text files (one text a line; the id is the line number),
JSONL, CSV (with a header), Parquet, and TFRecord files of tf.train.Examples. Every output record
keeps the id (and, for JSONL and Parquet inputs, the other fields) and adds ``embedding`` (a list
of float32). Parquet and TFRecord inputs take a columnar path (ReadFromParquetBatched, tfx-bsl's
TFXIO): whole Arrow record batches go through the module and out again. Runs locally on Beam's
in-process runner unless --runner says otherwise (e.g. DataflowRunner).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import beam_hub
from pipelines.io import (
    FORMAT_NAMES,
    LOCAL_RUNNERS,
    Located,
    csv_header,
    input_format,
    match_files,
    read_records,
    setup_logging,
    with_default_runner,
)

DEFAULT_MODULE = "builtin://all-MiniLM-L6-v2"
FORMATS = ("parquet", "jsonl", "tfrecord")
log = logging.getLogger("beam_hub.embed")


class EmbedOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        # not required=True: Beam parses every registered options class for every pipeline in the process
        parser.add_argument("--input", default=None, help="file pattern (local, gs://, ...); required")
        parser.add_argument(
            "--output", default=None, help="output prefix (shards PREFIX-SSSSS-of-NNNNN.EXT); required"
        )
        parser.add_argument(
            "--module", default=DEFAULT_MODULE, help=f"module handle (default {DEFAULT_MODULE})"
        )
        parser.add_argument(
            "--format", default="parquet", choices=FORMATS, help="output format (default parquet)"
        )
        parser.add_argument(
            "--input-format",
            "--input_format",
            dest="input_format",
            default=None,
            choices=FORMAT_NAMES,
            help="default: from the file extension",
        )
        parser.add_argument(
            "--text-field",
            "--text_field",
            dest="text_field",
            default="text",
            help="field or column holding the text (JSONL, CSV, Parquet)",
        )
        parser.add_argument(
            "--id-field",
            "--id_field",
            dest="id_field",
            default="id",
            help="field or column holding the record id (JSONL, CSV, Parquet)",
        )
        parser.add_argument("--signature", default=None, help="module signature (default: its default)")
        parser.add_argument(
            "--batch-size",
            "--batch_size",
            dest="batch_size",
            type=int,
            default=256,
            help="largest batch given to the module",
        )


# --- reading -----------------------------------------------------------------------------------


def _json_record(record: Any, text_field: str) -> dict[str, Any]:
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"JSONL record has no field {text_field!r} (fields: {keys}); pass --text-field")
    return record


def _to_record(located: Located, fmt: str, text_field: str, id_field: str, with_file: bool) -> dict[str, Any]:
    """The record to embed: text lines get their line number as id (and the file, from several
    files); CSV rows their id column (else the line number); JSONL objects stay whole."""
    record = located.record
    if fmt == "jsonl":
        return _json_record(record, text_field)
    if fmt == "csv":
        return {"id": record.get(id_field, str(located.position)), "text": record[text_field]}
    out = {"id": located.position, "text": record["text"]}
    if with_file:
        out["file"] = located.source
    return out


def _read_parquet(p: beam.Pipeline, pattern: str, first: str, text_field: str):
    """Whole record batches from Parquet files, and their Arrow schema."""
    import pyarrow.parquet as pq

    with FileSystems.open(first) as f:
        schema = pq.read_schema(f)
    if text_field not in schema.names:
        raise ValueError(f"{first} has no column {text_field!r} (columns: {schema.names}); pass --text-field")
    return p | "Read" >> beam.io.ReadFromParquetBatched(pattern), schema


def _read_examples(p: beam.Pipeline, pattern: str, first: str, text_field: str, id_field: str, batch: int):
    """Record batches of (id, text) from TFRecord files of tf.train.Examples (tfx-bsl's TFXIO)."""
    import pyarrow as pa
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.public import tfxio

    from beam_hub.examples import feature_kinds

    (record,) = list(tf.data.TFRecordDataset(first).take(1).as_numpy_iterator()) or [None]
    if record is None:
        raise ValueError(f"{first} holds no records")
    features = feature_kinds(record)
    if text_field not in features:
        raise ValueError(
            f"the tf.Examples in {first} have no feature {text_field!r} (features: {sorted(features)}); "
            "pass --text-field"
        )
    kinds = {
        "bytes_list": (schema_pb2.BYTES, pa.large_binary()),
        "int64_list": (schema_pb2.INT, pa.int64()),
        "float_list": (schema_pb2.FLOAT, pa.float32()),
    }
    schema = schema_pb2.Schema()
    arrow = []
    for name in (id_field, text_field):
        if name not in features or features[name] not in kinds:
            continue
        tfmd_type, arrow_type = kinds[features[name]]
        feature = schema.feature.add()
        feature.name, feature.type = name, tfmd_type
        arrow.append(pa.field(name, arrow_type))
    source = tfxio.TFExampleRecord(pattern, schema=schema)
    batches = (
        p | "Read" >> source.BeamSource(batch_size=batch) | "OneValueEach" >> beam.Map(_one_value_per_row)
    )
    return batches, pa.schema(arrow)


def _one_value_per_row(batch: Any) -> Any:
    """TFXIO gives every feature as a list column; ours hold one value per example."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for name, column in zip(batch.schema.names, batch.columns):
        lengths = pc.list_value_length(column)
        if pc.any(pc.not_equal(lengths, 1)).as_py() or column.null_count:
            raise ValueError(f"feature {name!r} must hold exactly one value in every tf.Example")
        columns.append(pc.list_flatten(column))
    return pa.Table.from_arrays(columns, names=batch.schema.names)


# --- writing -----------------------------------------------------------------------------------


def _jsonl_line(record: dict[str, Any], id_field: str) -> str:
    return json.dumps({"id": record.get(id_field), "embedding": record["embedding"]}, ensure_ascii=False)


def _example(record: dict[str, Any], id_field: str) -> bytes:
    from beam_hub.examples import serialize

    ident = record.get(id_field)
    return serialize(
        {
            "id": ident if isinstance(ident, int) else str(ident),
            "embedding": np.asarray(record["embedding"], np.float32),
        }
    )


def _parquet_schema(sample: Sequence[dict[str, Any]], dim: int | None = None):
    import pyarrow as pa

    schema = pa.Table.from_pylist(list(sample)).schema if sample else pa.schema([])
    fields = [f for f in schema if f.name != "embedding"]
    return pa.schema(fields + [pa.field("embedding", pa.list_(pa.float32()))])


def _sample_records(
    fmt: str, paths: list[str], text_field: str, id_field: str, n: int = 200
) -> list[dict[str, Any]]:
    """A few records from the first file, to fix the Parquet schema before the job starts."""
    out: list[dict[str, Any]] = []
    with FileSystems.open(paths[0]) as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if fmt == "jsonl":
            for line in stream:
                if line.strip():
                    out.append(_json_record(json.loads(line), text_field))
                if len(out) >= n:
                    break
        elif fmt == "csv":
            out = [{"id": "", "text": ""}]
        else:
            out = [{"id": 1, "text": ""} | ({"file": ""} if len(paths) > 1 else {})]
    return out


# --- the job -----------------------------------------------------------------------------------


def build(p: beam.Pipeline, opts: EmbedOptions) -> dict[str, Any]:
    """Add the job to ``p``; return what the summary needs (output pattern)."""
    fmt = input_format(opts.input, opts.input_format)
    paths = match_files(opts.input)
    # a batch job: full batches from the start (BatchElements would otherwise begin at 1 and grow)
    apply_kwargs = dict(
        signature=opts.signature, max_batch_size=opts.batch_size, min_batch_size=opts.batch_size
    )
    text_field = "text" if fmt in ("text", "csv") else opts.text_field
    id_field = "id" if fmt in ("text", "csv") else opts.id_field

    if fmt in ("parquet", "tfrecord"):
        if fmt == "parquet":
            tables, in_schema = _read_parquet(p, opts.input, paths[0], text_field)
        else:
            tables, in_schema = _read_examples(p, opts.input, paths[0], text_field, id_field, opts.batch_size)
        tables = tables | "Embed" >> beam_hub.ApplyHubModule(
            opts.module, columns=text_field, output_column="embedding", **apply_kwargs
        )
        if opts.format == "parquet":
            import pyarrow as pa

            schema = in_schema.append(pa.field("embedding", pa.list_(pa.float32())))
            tables | "Write" >> beam.io.WriteToParquetBatched(
                opts.output, schema, file_name_suffix=".parquet"
            )
            return {"pattern": opts.output + "*"}
        records = tables | "Rows" >> beam.FlatMap(lambda t: t.to_pylist())
    else:
        if fmt == "csv":
            header = csv_header(paths[0])
            if opts.text_field not in header:
                raise ValueError(
                    f"{paths[0]} has no column {opts.text_field!r} (columns: {header}); pass --text-field"
                )
        records = read_records(p, opts.input, fmt) | "Record" >> beam.Map(
            _to_record, fmt, opts.text_field, opts.id_field, len(paths) > 1
        )
        embedded = (
            records
            | "Key" >> beam.Map(lambda r, f=text_field: (r, r[f]))
            | "Embed" >> beam_hub.ApplyHubModule(opts.module, keyed=True, **apply_kwargs)
        )
        records = embedded | "Attach" >> beam.MapTuple(lambda r, e: {**r, "embedding": e.tolist()})
        if fmt in ("text", "csv"):
            records = records | "Trim" >> beam.Map(lambda r: {k: v for k, v in r.items() if k != "text"})

    if opts.format == "jsonl":
        _ = (
            records
            | "ToJson" >> beam.Map(_jsonl_line, id_field)
            | "Write" >> beam.io.WriteToText(opts.output, file_name_suffix=".jsonl")
        )
    elif opts.format == "tfrecord":
        _ = (
            records
            | "ToExample" >> beam.Map(_example, id_field)
            | "Write" >> beam.io.WriteToTFRecord(opts.output, file_name_suffix=".tfrecord")
        )
    else:
        sample = _sample_records(fmt, paths, text_field, id_field)
        if fmt in ("text", "csv"):
            sample = [{k: v for k, v in r.items() if k != "text"} for r in sample]
        schema = _parquet_schema(sample)
        names = schema.names
        _ = (
            records
            | "Conform" >> beam.Map(lambda r: {n: r.get(n) for n in names})
            | "Write" >> beam.io.WriteToParquet(opts.output, schema, file_name_suffix=".parquet")
        )
    return {"pattern": opts.output + "*"}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the job; return the summary (rows, seconds, rows/s, outputs)."""
    argv = with_default_runner(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser = argparse.ArgumentParser(prog="beam-hub embed", description=__doc__.split("\n\n")[0])
        EmbedOptions._add_argparse_args(parser)
        parser.print_help()
        raise SystemExit(0)
    options = PipelineOptions(argv)
    opts = options.view_as(EmbedOptions)
    missing = [flag for flag, value in (("--input", opts.input), ("--output", opts.output)) if not value]
    if missing:
        raise ValueError(f"beam-hub embed needs {' and '.join(missing)} (see `beam-hub embed --help`)")
    start = time.perf_counter()
    p = beam.Pipeline(options=options)
    info = build(p, opts)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    rows = _counter(result, "inference_elements")
    local = options.view_as(StandardOptions).runner in LOCAL_RUNNERS
    outputs = [m.path for r in FileSystems.match([info["pattern"]]) for m in r.metadata_list] if local else []
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds if seconds else 0.0,
        "outputs": sorted(outputs) or [info["pattern"]],
        "module": opts.module,
        "state": str(getattr(result, "state", "DONE")),
    }


def _counter(result: Any, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_namespace("beam_hub").with_name(name))["counters"]
    except Exception:  # noqa: BLE001 - some runners report no metrics
        return 0
    return sum(c.committed or 0 for c in found)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    summary = run(argv)
    if summary["rows"]:
        print(
            f"embedded {summary['rows']} rows in {summary['seconds']:.1f}s "
            f"({summary['rows_per_second']:.0f} rows/s) with {summary['module']}"
        )
    else:
        print(
            f"job ended in state {summary['state']} after {summary['seconds']:.1f}s with {summary['module']} "
            "(the runner reported no row count)"
        )
    for path in summary["outputs"]:
        print(f"output: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
