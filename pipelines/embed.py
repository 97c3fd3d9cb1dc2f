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
import csv
import io
import json
import logging
import os
import sys
import time
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import beam_hub

DEFAULT_MODULE = "builtin://all-MiniLM-L6-v2"
FORMATS = ("parquet", "jsonl", "tfrecord")
INPUT_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
                 ".csv": "csv", ".parquet": "parquet", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
                 ".tfrec": "tfrecord"}
log = logging.getLogger("beam_hub.embed")


class EmbedOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        # not required=True: Beam parses every registered options class for every pipeline in the process
        parser.add_argument("--input", default=None, help="file pattern (local, gs://, ...); required")
        parser.add_argument("--output", default=None, help="output prefix (shards PREFIX-SSSSS-of-NNNNN.EXT); required")
        parser.add_argument("--module", default=DEFAULT_MODULE, help=f"module handle (default {DEFAULT_MODULE})")
        parser.add_argument("--format", default="parquet", choices=FORMATS, help="output format (default parquet)")
        parser.add_argument("--input-format", "--input_format", dest="input_format", default=None,
                            choices=sorted(set(INPUT_FORMATS.values())), help="default: from the file extension")
        parser.add_argument("--text-field", "--text_field", dest="text_field", default="text",
                            help="field or column holding the text (JSONL, CSV, Parquet)")
        parser.add_argument("--id-field", "--id_field", dest="id_field", default="id",
                            help="field or column holding the record id (JSONL, CSV, Parquet)")
        parser.add_argument("--signature", default=None, help="module signature (default: its default)")
        parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=256,
                            help="largest batch given to the module")


# --- reading -----------------------------------------------------------------------------------


def _text_lines(readable: fileio.ReadableFile, with_file: bool) -> Iterable[dict[str, Any]]:
    with readable.open() as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", newline=""), start=1):
            record = {"id": number, "text": line.rstrip("\r\n")}
            if with_file:
                record["file"] = readable.metadata.path
            yield record


def _csv_rows(readable: fileio.ReadableFile, text_field: str, id_field: str) -> Iterable[dict[str, Any]]:
    with readable.open() as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        if text_field not in (reader.fieldnames or []):
            raise ValueError(f"{readable.metadata.path} has no column {text_field!r} (columns: {reader.fieldnames}); "
                             "pass --text-field")
        for number, row in enumerate(reader, start=1):
            yield {"id": row.get(id_field, str(number)), "text": row[text_field]}


def _json_record(line: str, text_field: str) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"JSONL record has no field {text_field!r} (fields: {keys}); pass --text-field")
    return record


def _matched(pattern: str) -> list[str]:
    paths = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if not paths:
        raise FileNotFoundError(f"--input {pattern!r} matches no file")
    return sorted(paths)


def _input_format(pattern: str, given: str | None) -> str:
    if given:
        return given
    ext = os.path.splitext(pattern.removesuffix(".gz"))[1].lower()
    if ext not in INPUT_FORMATS:
        raise ValueError(f"cannot tell the format of {pattern!r} from its extension; pass --input-format "
                         f"({', '.join(sorted(set(INPUT_FORMATS.values())))})")
    return INPUT_FORMATS[ext]


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

    (record,) = list(tf.data.TFRecordDataset(first).take(1).as_numpy_iterator()) or [None]
    if record is None:
        raise ValueError(f"{first} holds no records")
    features = tf.train.Example.FromString(record).features.feature
    if text_field not in features:
        raise ValueError(f"the tf.Examples in {first} have no feature {text_field!r} (features: {sorted(features)}); "
                         "pass --text-field")
    kinds = {"bytes_list": (schema_pb2.BYTES, pa.large_binary()), "int64_list": (schema_pb2.INT, pa.int64()),
             "float_list": (schema_pb2.FLOAT, pa.float32())}
    schema = schema_pb2.Schema()
    arrow = []
    for name in (id_field, text_field):
        if name not in features:
            continue
        tfmd_type, arrow_type = kinds[features[name].WhichOneof("kind")]
        feature = schema.feature.add()
        feature.name, feature.type = name, tfmd_type
        arrow.append(pa.field(name, arrow_type))
    source = tfxio.TFExampleRecord(pattern, schema=schema)
    batches = (p | "Read" >> source.BeamSource(batch_size=batch)
                 | "OneValueEach" >> beam.Map(_one_value_per_row))
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
    import tensorflow as tf

    ident = record.get(id_field)
    id_feature = (tf.train.Feature(int64_list=tf.train.Int64List(value=[ident])) if isinstance(ident, int)
                  else tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(ident).encode()])))
    return tf.train.Example(features=tf.train.Features(feature={
        "id": id_feature,
        "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=record["embedding"])),
    })).SerializeToString()


def _parquet_schema(sample: Sequence[dict[str, Any]], dim: int | None = None):
    import pyarrow as pa

    schema = pa.Table.from_pylist(list(sample)).schema if sample else pa.schema([])
    fields = [f for f in schema if f.name != "embedding"]
    return pa.schema(fields + [pa.field("embedding", pa.list_(pa.float32()))])


def _sample_records(fmt: str, paths: list[str], text_field: str, id_field: str, n: int = 200) -> list[dict[str, Any]]:
    """A few records from the first file, to fix the Parquet schema before the job starts."""
    out: list[dict[str, Any]] = []
    with FileSystems.open(paths[0]) as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if fmt == "jsonl":
            for line in stream:
                if line.strip():
                    out.append(_json_record(line, text_field))
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
    fmt = _input_format(opts.input, opts.input_format)
    paths = _matched(opts.input)
    # a batch job: full batches from the start (BatchElements would otherwise begin at 1 and grow)
    apply_kwargs = dict(signature=opts.signature, max_batch_size=opts.batch_size, min_batch_size=opts.batch_size)
    text_field = "text" if fmt in ("text", "csv") else opts.text_field
    id_field = "id" if fmt in ("text", "csv") else opts.id_field

    if fmt in ("parquet", "tfrecord"):
        if fmt == "parquet":
            tables, in_schema = _read_parquet(p, opts.input, paths[0], text_field)
        else:
            tables, in_schema = _read_examples(p, opts.input, paths[0], text_field, id_field, opts.batch_size)
        tables = tables | "Embed" >> beam_hub.ApplyHubModule(opts.module, columns=text_field, output_column="embedding",
                                                             **apply_kwargs)
        if opts.format == "parquet":
            import pyarrow as pa

            schema = in_schema.append(pa.field("embedding", pa.list_(pa.float32())))
            tables | "Write" >> beam.io.WriteToParquetBatched(opts.output, schema, file_name_suffix=".parquet")
            return {"pattern": opts.output + "*"}
        records = tables | "Rows" >> beam.FlatMap(lambda t: t.to_pylist())
    else:
        if fmt == "text":
            records = (p | "Match" >> fileio.MatchFiles(opts.input) | "Open" >> fileio.ReadMatches()
                         | "Lines" >> beam.FlatMap(_text_lines, with_file=len(paths) > 1))
        elif fmt == "csv":
            records = (p | "Match" >> fileio.MatchFiles(opts.input) | "Open" >> fileio.ReadMatches()
                         | "Rows" >> beam.FlatMap(_csv_rows, opts.text_field, opts.id_field))
        else:
            records = (p | "Read" >> beam.io.ReadFromText(opts.input)
                         | "Parse" >> beam.Map(_json_record, text_field))
        embedded = (records
                    | "Key" >> beam.Map(lambda r, f=text_field: (r, r[f]))
                    | "Embed" >> beam_hub.ApplyHubModule(opts.module, keyed=True, **apply_kwargs))
        records = embedded | "Attach" >> beam.MapTuple(lambda r, e: {**r, "embedding": e.tolist()})
        if fmt in ("text", "csv"):
            records = records | "Trim" >> beam.Map(lambda r: {k: v for k, v in r.items() if k != "text"})

    if opts.format == "jsonl":
        _ = (records | "ToJson" >> beam.Map(_jsonl_line, id_field)
                     | "Write" >> beam.io.WriteToText(opts.output, file_name_suffix=".jsonl"))
    elif opts.format == "tfrecord":
        _ = (records | "ToExample" >> beam.Map(_example, id_field)
                     | "Write" >> beam.io.WriteToTFRecord(opts.output, file_name_suffix=".tfrecord"))
    else:
        sample = _sample_records(fmt, paths, text_field, id_field)
        if fmt in ("text", "csv"):
            sample = [{k: v for k, v in r.items() if k != "text"} for r in sample]
        schema = _parquet_schema(sample)
        names = schema.names
        _ = (records | "Conform" >> beam.Map(lambda r: {n: r.get(n) for n in names})
                     | "Write" >> beam.io.WriteToParquet(opts.output, schema, file_name_suffix=".parquet"))
    return {"pattern": opts.output + "*"}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the job; return the summary (rows, seconds, rows/s, outputs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append("--runner=FnApiRunner")  # local, in-process; DirectRunner would first try to download Prism
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
    local = options.view_as(StandardOptions).runner in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")
    outputs = [m.path for r in FileSystems.match([info["pattern"]]) for m in r.metadata_list] if local else []
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds if seconds else 0.0,
            "outputs": sorted(outputs) or [info["pattern"]], "module": opts.module,
            "state": str(getattr(result, "state", "DONE"))}


def _counter(result: Any, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_namespace("beam_hub").with_name(name))["counters"]
    except Exception:  # noqa: BLE001 - some runners report no metrics
        return 0
    return sum(c.committed or 0 for c in found)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    summary = run(argv)
    if summary["rows"]:
        print(f"embedded {summary['rows']} rows in {summary['seconds']:.1f}s "
              f"({summary['rows_per_second']:.0f} rows/s) with {summary['module']}")
    else:
        print(f"job ended in state {summary['state']} after {summary['seconds']:.1f}s with {summary['module']} "
              "(the runner reported no row count)")
    for path in summary["outputs"]:
        print(f"output: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
