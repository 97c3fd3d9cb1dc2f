"""The batch embedding job: texts in, one embedding per text out, bad records set aside.

    beam-hub embed --input PATTERN --output PREFIX [--module HANDLE] [--format parquet|jsonl|tfrecord]
                   [--text-field text] [--id-field id] [--max-errors N] [any Beam pipeline option]

Inputs (by extension, or --input-format): text files (one text a line; the id is the line number),
JSONL, CSV (with a header), Parquet, and TFRecord files of tf.train.Examples. Every output record
keeps the id (and, for JSONL and Parquet inputs, the other fields) and adds ``embedding`` (a list
of float32). Every format takes the columnar path: files are read as Arrow tables (text, JSONL
and CSV a block of lines at a time, see :mod:`pipelines.blocks`), and whole tables go through the
module and out again. A record that cannot be used (unreadable, no text, or one the module fails
on) goes to PREFIX-errors-*.jsonl with its file, position and error; the exit status is 1 when
any was rejected (more than --max-errors). Runs locally on Beam's in-process runner unless
--runner says otherwise (e.g. DataflowRunner); locally, no reshuffle holds the rows in memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

import beam_hub
from beam_hub.beam.options import HubOptions  # registers --hub_cache_dir before flags are checked
from pipelines import blocks, embed_io, progress
from pipelines.blocks import MISFIT, RECORD, ROW, SOURCE
from pipelines.io import (
    BATCH_READERS,
    ERRORS,
    FORMAT_NAMES,
    LOCAL_RUNNERS,
    Located,
    dead_letter,
    input_format,
    match_files,
    read_batches,
    setup_logging,
    with_default_runner,
)

DEFAULT_MODULE = "builtin://all-MiniLM-L6-v2"
FORMATS = ("parquet", "jsonl", "tfrecord")
COUNTERS = "beam_hub.embed"
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
            "--precision",
            default=None,
            choices=("fp32", "bf16", "auto"),
            help="the built-in module's compute precision: fp32 (default, equal to sentence-transformers), "
            "bf16 (faster on CPUs with AVX512_BF16 or AMX; cosine >= 0.9999 to fp32), or auto "
            "(bf16 where each worker's CPU has it)",
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
            help="field or column holding the text (JSONL, CSV, Parquet, TFRecord)",
        )
        parser.add_argument(
            "--id-field",
            "--id_field",
            dest="id_field",
            default="id",
            help="field or column holding the record id (JSONL, CSV, Parquet, TFRecord)",
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
        parser.add_argument(
            "--max-errors",
            "--max_errors",
            dest="max_errors",
            type=int,
            default=0,
            help="rejected records allowed before the exit status is 1 (default 0)",
        )


def _counted(name: str, note: Any) -> Any:
    """A function that counts ``n`` (default 1) per element in the Beam counter ``name`` and
    tells ``note`` (a module-level function of :mod:`pipelines.progress`), passing the element on."""
    counter = Metrics.counter(COUNTERS, name)

    def count(element: Any, n: int = 1) -> Any:
        counter.inc(n)
        note(n)
        return element

    return count


def sort_window(opts: Any) -> int:
    """Rows read (and sorted by length) together: 32 batches, at least 8,192 rows, so that batches
    of similar lengths pad little (measured on bench/embed.py's JSONL job when it sorted per bundle:
    1,024 rows at a time 26.8 s, 4,096 26.5 s, 8,192 25.2 s; the texts held are a few MB), and a
    step of the progress line comes every ~15 s even with MiniLM on 2 cores."""
    return max(32 * opts.batch_size, 8192)


# --- the columnar path (every format) ------------------------------------------------------------


class _UsableRows(beam.DoFn):
    """A located Arrow table -> the rows with a text (plus provenance columns) and dead letters
    for the others. TFRecord columns are lists: a feature must hold exactly one value. (The line
    formats' readers set aside rows without a text themselves, with the reasons they always gave.)"""

    def __init__(self, text_field: str, lists: bool) -> None:
        self._text_field, self._lists = text_field, lists

    def process(self, located: Located) -> Iterable[Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = located.record
        if self._lists:
            table = _one_value_per_row(table)
        if self._text_field not in table.column_names:  # e.g. one Parquet file of many lacks it
            table = table.append_column(self._text_field, pa.nulls(table.num_rows, pa.string()))
        column = table.column(self._text_field)
        is_text = (
            pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)
            or pa.types.is_binary(column.type)
            or pa.types.is_large_binary(column.type)
        )
        usable = pc.is_valid(column) if is_text else pa.array([False] * table.num_rows)
        bad = pc.invert(usable).to_numpy(zero_copy_only=False).nonzero()[0]
        for i in bad:
            error = f"the text field {self._text_field!r} is " + (
                "missing or null" if is_text else f"of type {column.type}, not text"
            )
            row = table.slice(int(i), 1).to_pylist()[0]
            yield beam.pvalue.TaggedOutput(
                ERRORS, dead_letter(located.source, located.position + int(i), error, row)
            )
        table = table.append_column(SOURCE, pa.array([located.source] * table.num_rows, pa.string()))
        if ROW not in table.column_names:  # Parquet and TFRecord: rows in file order from the first
            rows = pa.array(range(located.position, located.position + table.num_rows), pa.int64())
            table = table.append_column(ROW, rows)
        table = table.filter(usable)
        if table.num_rows:
            yield table


def _one_value_per_row(table: Any) -> Any:
    """TFRecord features come as list columns; a row whose list does not hold one value gets null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        column = column.combine_chunks()
        one = pc.fill_null(pc.equal(pc.list_value_length(column), 1), False)
        first = pc.list_element(pc.if_else(one, column, pa.scalar(None, column.type)), 0)
        columns.append(first)
    return pa.Table.from_arrays(columns, names=table.column_names)


class _ConformTable(beam.DoFn):
    """An embedded table in the output's schema (the first file's, set before the job), without
    provenance; a table from a file whose columns do not fit it gives a dead letter per row."""

    def __init__(self, schema: Any) -> None:
        self._schema = schema

    def process(self, table: Any) -> Iterable[Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        if MISFIT in table.column_names:  # JSONL records whose fields the first records' types do not fit
            misfit = pc.is_valid(table.column(MISFIT))
            for row in table.filter(misfit).select([SOURCE, ROW, MISFIT, RECORD]).to_pylist():
                error = f"does not fit the output's Parquet schema (set by the first records): {row[MISFIT]}"
                yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(row[SOURCE], row[ROW], error, row[RECORD]))
            table = table.filter(pc.invert(misfit))
        columns = [
            table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in self._schema
        ]
        try:
            yield pa.Table.from_arrays(columns, names=self._schema.names).cast(self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            error = f"does not fit the output's Parquet schema (the first file's): {e}"
            for row in table.to_pylist():
                source, position = row.pop(SOURCE), row.pop(ROW)
                row.pop("embedding", None)
                yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, position, error, row))


def _failed_table_row(failed: Any) -> dict[str, Any]:
    row = dict(failed.element)
    source, position = row.pop(SOURCE, ""), row.pop(ROW, None)
    why, raw = row.pop(MISFIT, None), row.pop(RECORD, None)
    return dead_letter(source, position, f"the module failed: {failed.error}", raw if why else row)


def _columnar(p: beam.Pipeline, opts: Any, fmt: str, paths: list[str], apply: dict[str, Any]):
    if fmt in blocks.READERS:
        schema = embed_io.row_schema(fmt, paths, opts.text_field, len(paths) > 1)
        if fmt == "csv":
            embed_io.require_column(paths[0], opts.text_field)
        keep = None if opts.format == "parquet" else (opts.text_field, opts.id_field)
        spec = blocks.Spec(
            fmt,
            opts.text_field,
            opts.id_field,
            embed_io.read_schema(schema, opts.text_field, keep),
            len(paths) > 1,
        )
        read, options = blocks.READERS[fmt], spec
    elif fmt == "tfrecord":
        options = embed_io.tfrecord_features(paths[0], opts.text_field, opts.id_field)
        read, schema = BATCH_READERS[fmt], embed_io.tfrecord_schema(options)
    else:
        read, options, schema = BATCH_READERS[fmt], None, embed_io.parquet_schema(paths[0], opts.text_field)
    # read batches much larger than the module's: sorting a whole batch by length leaves the
    # module's sub-batches of similar texts (less padding)
    batches, read_errors = read_batches(p, opts.input, read, sort_window(opts), options)
    if not is_local(opts):  # one worker reads a file; on a distributed runner every worker may embed it
        batches = batches | "Spread" >> beam.Reshuffle()
    text = "text" if fmt == "text" else opts.text_field
    usable = batches | "Rows" >> beam.ParDo(_UsableRows(text, fmt == "tfrecord")).with_outputs(
        ERRORS, main="tables"
    )
    embedded, failed = (
        usable.tables
        | "Windows" >> beam.FlatMap(_windows, sort_window(opts))
        | "Embed"
        >> beam_hub.ApplyHubModule(
            opts.module, columns=text, output_column="embedding", **apply
        ).with_exception_handling()
    )
    errors = [read_errors, usable[ERRORS], failed | "FailedRows" >> beam.Map(_failed_table_row)]
    return embedded, schema, errors


def _windows(table: Any, rows: int) -> Iterable[Any]:
    """``table`` in zero-copy slices of at most ``rows`` rows: the sort window (a text block read
    in one piece may hold more), and a progress step a user sees even with a slow module."""
    for lo in range(0, table.num_rows, rows):
        yield table.slice(lo, rows)


def is_local(opts: Any) -> bool:
    """True on Beam's local runners, where a reshuffle only holds every row in memory."""
    return opts.view_as(StandardOptions).runner in LOCAL_RUNNERS


# --- the job -----------------------------------------------------------------------------------


def build(p: beam.Pipeline, opts: EmbedOptions) -> dict[str, Any]:
    """Add the job to ``p``; return what the summary needs (output and errors patterns)."""
    fmt = input_format(opts.input, opts.input_format)
    paths = match_files(opts.input)
    embed_io.check_prefix(opts.output)
    # a batch job: full batches from the start (BatchElements would otherwise begin at 1 and grow)
    apply = {
        "signature": opts.signature,
        "max_batch_size": opts.batch_size,
        "min_batch_size": opts.batch_size,
    }
    id_field = "id" if fmt in ("text", "csv") else opts.id_field
    count = _counted("rows_embedded", progress.note_rows)
    tables, schema, errors = _columnar(p, opts, fmt, paths, apply)
    if opts.format == "parquet":
        conformed = tables | "Conform" >> beam.ParDo(_ConformTable(schema)).with_outputs(
            ERRORS, main="tables"
        )
        errors.append(conformed[ERRORS])
        tables = conformed.tables | "Count" >> beam.Map(lambda t: count(t, t.num_rows))
        embed_io.write_tables(tables, opts.output, schema)
    elif opts.format == "jsonl":
        embed_io.write_jsonl_tables(tables, opts.output, id_field, count)
    else:
        embed_io.write_example_tables(tables, opts.output, id_field, count)
    _ = (
        errors
        | "AllErrors" >> beam.Flatten()
        | "CountErrors" >> beam.Map(_counted("rows_rejected", progress.note_rejected))
        | "ErrorLines" >> beam.Map(lambda e: json.dumps(e, ensure_ascii=False, default=repr))
        | "WriteErrors" >> beam.io.WriteToText(opts.output + "-errors", file_name_suffix=".jsonl")
    )
    return {"pattern": opts.output + "-[0-9]*", "errors": opts.output + "-errors-*.jsonl"}


def unknown_flags(argv: Sequence[str]) -> list[str]:
    """Flags that neither the job nor any registered Beam options class knows (Beam would drop them)."""
    found: list[str] = []

    def probe(parser: Any) -> None:
        _known, unknown = parser.parse_known_args(list(argv))
        found.extend(a.split("=", 1)[0] for a in unknown if a.startswith("--"))

    PipelineOptions(list(argv)).get_all_options(add_extra_args_fn=probe, retain_unknown_options=True)
    return found


def with_precision(module: str, precision: str) -> str:
    """``module`` (a builtin:// handle) asking for ``precision``; ValueError for any other handle."""
    if not module.lower().startswith("builtin://"):
        raise ValueError(
            f"--precision applies to built-in modules (builtin://...), not {module!r}; export that module "
            "in the precision you want instead"
        )
    base = module.split("?", 1)[0]
    return f"{base}?precision={precision}"


def help_parser() -> argparse.ArgumentParser:
    """The job's own flags, for ``beam-hub embed --help`` and the command-line reference."""
    parser = argparse.ArgumentParser(prog="beam-hub embed", description=__doc__.split("\n\n")[0])
    EmbedOptions._add_argparse_args(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the job; return the summary (rows, rejected, seconds, rows/s, outputs, errors)."""
    argv = with_default_runner(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        help_parser().print_help()
        raise SystemExit(0)
    unknown = unknown_flags(argv)
    if unknown:
        raise ValueError(
            f"unknown flag(s) {', '.join(unknown)} (neither beam-hub embed nor Beam knows them; "
            "see `beam-hub embed --help`)"
        )
    options = PipelineOptions(argv)
    opts = options.view_as(EmbedOptions)
    missing = [flag for flag, value in (("--input", opts.input), ("--output", opts.output)) if not value]
    if missing:
        raise ValueError(f"beam-hub embed needs {' and '.join(missing)} (see `beam-hub embed --help`)")
    if opts.precision:
        opts.module = with_precision(opts.module, opts.precision)
    start = time.perf_counter()
    local = is_local(opts)
    p = beam.Pipeline(options=options)
    info = build(p, opts)  # checks the input and output first: a usage error costs no module build
    module_seconds = _ready_module(opts) if local else None
    in_process = local and options.view_as(DirectOptions).direct_running_mode == "in_memory"
    if in_process:  # the job's steps run in this process: they feed its progress line
        progress.PROGRESS.start(embed_io.total_bytes(opts.input))
    try:
        with embed_io.staging_removed_on_failure(opts.output):
            result = p.run()
            result.wait_until_finish()
    finally:
        progress.PROGRESS.close()
    seconds = time.perf_counter() - start
    rows, rejected = _counter(result, "rows_embedded"), _counter(result, "rows_rejected")
    # the module's own calls, summed: one worker's time only when one process ran them all
    embedding = _total_msecs(result, "inference_msecs") if in_process else None
    if rejected == 0:
        embed_io.remove(info["errors"])  # Beam writes an empty shard; no errors, no errors file
    found = embed_io.matches(info["pattern"]) if local else []
    return {
        "rows": rows,
        "rejected": rejected,
        "max_errors": opts.max_errors,
        "seconds": seconds,
        "rows_per_second": (rows or 0) / seconds if seconds else 0.0,
        # where the time went (in-process runs): the module's own calls, and a first-use build
        # or download of the module (local runs resolve it before the pipeline starts)
        "embedding_seconds": embedding / 1000 if embedding is not None else None,
        "module_seconds": module_seconds,
        "outputs": found or [info["pattern"]],
        "errors": info["errors"],
        "module": opts.module,
        "state": str(getattr(result, "state", "DONE")),
    }


def _ready_module(opts: Any) -> float:
    """Resolve the job's module here, before the pipeline starts (a local run's workers are this
    process), so that a first-use build or download is its own step with its own time."""
    hub = opts.view_as(HubOptions)
    start = time.perf_counter()
    beam_hub.resolve(
        beam_hub.resolve_version(opts.module),
        cache_dir=hub.hub_cache_dir,
        local_cache_dir=hub.hub_local_cache_dir,
    )
    return time.perf_counter() - start


def _rates(summary: dict[str, Any]) -> str:
    """How the time went: the module's own calls (its rate), a first-use build, and the rest."""
    module = summary["module"]
    embedding = summary["embedding_seconds"]
    if not embedding or not summary["rows"]:
        return f" ({summary['rows_per_second']:.0f} rows/s) with {module}"
    built = summary["module_seconds"] or 0.0
    built = built if built >= 1.0 else 0.0  # a warm cache's check is start-up, not a build
    parts = [f"{embedding:.1f}s embedding ({summary['rows'] / embedding:,.0f} rows/s)"]
    if built:
        parts.append(f"{built:.1f}s building or fetching the module (once)")
    rest = summary["seconds"] - embedding - built
    if rest > 0:
        parts.append(f"{rest:.1f}s start-up and I/O")
    return f" with {module}: {', '.join(parts)}"


def _total_msecs(result: Any, name: str) -> float | None:
    """The sum of a beam_hub distribution (e.g. inference_msecs), or None when not reported."""
    from beam_hub.beam.metrics import METRICS_NAMESPACE

    found = _metrics(result, METRICS_NAMESPACE, name, "distributions")
    if not found:
        return None
    return float(sum(d.committed.sum for d in found if d.committed is not None))


def _counter(result: Any, name: str) -> int | None:
    """The committed counter, or None when the runner reports no metrics."""
    found = _metrics(result, COUNTERS, name, "counters")
    return None if found is None else sum(c.committed or 0 for c in found)


def _metrics(result: Any, namespace: str, name: str, kind: str) -> list[Any] | None:
    """The job's metric results of ``kind`` ("counters", "distributions") named ``name``, or
    None when the runner reports no metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        return result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))[kind]
    except Exception:  # noqa: BLE001 - some runners report no metrics
        return None


def main(argv: Sequence[str] | None = None, *, verbose: bool = False) -> int:
    setup_logging(verbose)
    summary = run(argv)
    rows, rejected = summary["rows"], summary["rejected"]
    if rows is None:
        print(
            f"job ended in state {summary['state']} after {summary['seconds']:.1f}s with {summary['module']} "
            "(the runner reported no row counts)"
        )
    else:
        print(
            f"embedded {rows} rows in {summary['seconds']:.1f}s{_rates(summary)}; rejected {rejected or 0}"
            + (f" (errors: {summary['errors']})" if rejected else "")
        )
    for path in summary["outputs"]:
        print(f"output: {path}")
    return 1 if (rejected or 0) > summary["max_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
