"""What the jobs share: command-line defaults, logging, finding input files and reading records.

Record formats, chosen by extension (or a flag):

| format   | extensions                   | one record is                                          |
|----------|------------------------------|--------------------------------------------------------|
| text     | .txt .text                   | a line: {"text": line}                                 |
| jsonl    | .jsonl .json .ndjson         | a line holding a JSON object                           |
| csv      | .csv                         | a row, keyed by the header                             |
| parquet  | .parquet                     | a row (read as whole Arrow record batches)             |
| tfrecord | .tfrecord .tfrecords .tfrec  | a tf.train.Example                                     |

Reading never stops at a bad record: every record comes with where it came from (file and
1-based line for text formats, 0-based row otherwise), and a record that cannot be read
(invalid UTF-8, malformed JSON or CSV, a corrupt TFRecord) goes to the ``errors`` output as a
dead letter ``{"source", "position", "error", "record"}`` (the raw record, truncated). Blank and
whitespace-only lines are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.ahead import read_ahead
from pipelines.progress import PROGRESS
from pipelines.tfrecord import records

INPUT_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfrec": "tfrecord",
}
FORMAT_NAMES = sorted(set(INPUT_FORMATS.values()))
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")
ERRORS = "errors"  #: the tag of the dead-letter output
RECORD_LIMIT = 4096  #: characters of a bad record kept in its dead letter
MAX_LINE_BYTES = 16 << 20  #: a longer line is a bad record (read in bounded pieces, never whole)


def with_default_runner(argv: Sequence[str]) -> list[str]:
    """``argv`` plus ``--runner=FnApiRunner`` unless a runner is named (local and in-process:
    Beam's DirectRunner would first try to download the Prism runner)."""
    argv = list(argv)
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append("--runner=FnApiRunner")
    return argv


def setup_logging(verbose: bool = False) -> None:
    """beam-hub's own progress lines on stderr. Beam's and absl's only with ``verbose``: a job's
    failure is reported once, as one line, by the job itself."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("beam_hub").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.CRITICAL)


def match_files(pattern: str, flag: str = "--input") -> list[str]:
    """Every file ``pattern`` (local, gs://, ...) matches, sorted; FileNotFoundError when none."""
    paths = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    if not paths:
        raise FileNotFoundError(f"{flag} {pattern!r} matches no file")
    return paths


def input_format(
    pattern: str, given: str | None, *, allowed: Sequence[str] = FORMAT_NAMES, flag: str = "--input-format"
) -> str:
    """The record format: ``given``, else from the pattern's extension (``.gz`` ignored)."""
    if given:
        fmt = given
    else:
        ext = os.path.splitext(pattern.removesuffix(".gz"))[1].lower()
        if ext not in INPUT_FORMATS:
            raise ValueError(
                f"cannot tell the format of {pattern!r} from its extension; pass {flag} ({', '.join(allowed)})"
            )
        fmt = INPUT_FORMATS[ext]
    if fmt not in allowed:
        raise ValueError(f"{pattern!r}: {fmt} input is not supported here; use {', '.join(allowed)}")
    return fmt


# --- records and dead letters --------------------------------------------------------------------


class Located(NamedTuple):
    """A record (or a batch of rows) and where it came from: the file, and its 1-based line
    (text formats) or the 0-based index of its (first) row."""

    source: str
    position: int
    record: Any


def dead_letter(source: str, position: int | None, error: str, record: Any) -> dict[str, Any]:
    """The dead letter of a record that could not be used: JSON-ready, the raw record truncated."""
    if isinstance(record, bytes):
        raw = record.decode("utf-8", "backslashreplace")
    elif isinstance(record, str):
        raw = record
    else:
        raw = json.dumps(record, ensure_ascii=False, default=repr)
    if len(raw) > RECORD_LIMIT:
        raw = raw[:RECORD_LIMIT] + f"... ({len(raw)} characters)"
    return {"source": source, "position": position, "error": error, "record": raw}


class TooLong(bytes):
    """The start of a line longer than MAX_LINE_BYTES (the rest was skipped, never held in memory)."""


Lines = Iterable[tuple[int, bytes]]  #: (1-based number, raw line without its end) of a file


def _lines(f: Any) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of a binary file; a line longer than MAX_LINE_BYTES comes as a
    :class:`TooLong` holding its start."""
    number = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        number += 1
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (Windows exports)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass  # skip to the end of the line in bounded pieces
            yield number, TooLong(raw[:RECORD_LIMIT])
            continue
        yield number, raw.rstrip(b"\r\n")


def _decoded(source: str, number: int, raw: bytes) -> str | dict[str, Any]:
    """The line as text, or its dead letter when it is not UTF-8 or too long."""
    if isinstance(raw, TooLong):
        return dead_letter(source, number, f"the line is longer than {MAX_LINE_BYTES} bytes", bytes(raw))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return dead_letter(source, number, f"invalid UTF-8 at byte {e.start} of the line", raw)


def text_records(source: str, lines: Lines) -> Iterable[Any]:
    """Located ``{"text": line}`` records of non-blank lines, and dead letters."""
    for number, raw in lines:
        line = _decoded(source, number, raw)
        if isinstance(line, dict):
            yield beam.pvalue.TaggedOutput(ERRORS, line)
        elif line.strip():
            yield Located(source, number, {"text": line})


def jsonl_records(source: str, lines: Lines) -> Iterable[Any]:
    """Located JSON objects of non-blank lines, and dead letters."""
    for number, raw in lines:
        line = _decoded(source, number, raw)
        if isinstance(line, dict):
            yield beam.pvalue.TaggedOutput(ERRORS, line)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, number, f"malformed JSON: {e}", line))
            continue
        if not isinstance(record, dict):
            error = f"not a JSON object but {type(record).__name__}"
            yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, number, error, line))
            continue
        yield Located(source, number, record)


def csv_rows(source: str, lines: Lines) -> Iterable[Any]:
    """The header (a list of names) first, then ``(1-based first line, fields)`` of each row with
    as many fields as the header, and dead letters (malformed rows, invalid UTF-8); blank rows are
    skipped. A quoted value may span lines."""
    consumed: list[str] = []  # the physical lines of the row being read (for its dead letter)
    bad: list[bool] = [False]  # whether one of them was not UTF-8

    def text_lines() -> Iterator[str]:
        for _number, raw in lines:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", "surrogateescape")  # the row becomes a dead letter
                bad[0] = True
            consumed.append(line)
            yield line + "\n"

    reader = csv.reader(text_lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield beam.pvalue.TaggedOutput(
            ERRORS, dead_letter(source, 1, f"malformed CSV header: {e}", "".join(consumed))
        )
        return
    if _has_bad_utf8(header):
        yield beam.pvalue.TaggedOutput(
            ERRORS, dead_letter(source, 1, "invalid UTF-8 in the header", consumed[0])
        )
        return
    yield header
    width = len(header)
    start = reader.line_num + 1
    while True:
        consumed.clear()
        bad[0] = False
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            error = dead_letter(source, start, f"malformed CSV: {e}", "\n".join(consumed))
            yield beam.pvalue.TaggedOutput(ERRORS, error)
            start = reader.line_num + 1
            continue
        if not "".join(row).strip():
            pass  # a blank line
        elif bad[0]:
            raw = "\n".join(consumed).encode("utf-8", "surrogateescape")
            yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, start, "invalid UTF-8", raw))
        elif len(row) != width:
            raw = "\n".join(consumed).encode("utf-8", "surrogateescape")
            error = f"malformed CSV: {len(row)} fields where the header has {width}"
            yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, start, error, raw))
        else:
            yield start, row
        start = reader.line_num + 1


def _has_bad_utf8(fields: Sequence[str]) -> bool:
    """True when a field holds bytes that were not UTF-8 (decoded as lone surrogates)."""
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text(source: str, f: Any) -> Iterable[Any]:
    return text_records(source, _lines(f))


def _jsonl(source: str, f: Any) -> Iterable[Any]:
    return jsonl_records(source, _lines(f))


def _csv(source: str, f: Any) -> Iterable[Any]:
    header: list[str] = []
    for item in csv_rows(source, _lines(f)):
        if isinstance(item, list):
            header = item
        elif isinstance(item, tuple):
            start, row = item
            yield Located(source, start, dict(zip(header, row)))
        else:
            yield item


def _tfrecord(source: str, f: Any) -> Iterable[Any]:
    from beam_hub.examples import to_dict

    index = 0
    try:
        for index, record in enumerate(records(f)):
            try:
                yield Located(source, index, to_dict(record))
            except Exception as e:  # noqa: BLE001 - not a tf.Example
                yield beam.pvalue.TaggedOutput(
                    ERRORS, dead_letter(source, index, f"not a tf.Example: {e}", record)
                )
    except ValueError as e:
        yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, index, f"corrupt TFRecord file: {e}", b""))


def _parquet(source: str, f: Any) -> Iterable[Any]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches():
        for i, record in enumerate(batch.to_pylist()):
            yield Located(source, row + i, record)
        row += batch.num_rows


_READERS = {"text": _text, "jsonl": _jsonl, "csv": _csv, "tfrecord": _tfrecord, "parquet": _parquet}


class _ReadFile(beam.DoFn):
    def __init__(self, fmt: str) -> None:
        self._read = _READERS[fmt]

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        with readable.open() as f:
            yield from self._read(readable.metadata.path, f)


def read_records(p: beam.Pipeline, pattern: str, fmt: str) -> tuple[beam.PCollection, beam.PCollection]:
    """``(records, errors)`` of the files ``pattern`` matches: :class:`Located` records, and the
    dead letters of records that could not be read (see the module docstring)."""
    if fmt not in _READERS:
        raise ValueError(f"unknown record format {fmt!r}; use one of {', '.join(FORMAT_NAMES)}")
    read = (
        p
        | "Match" >> fileio.MatchFiles(pattern)
        | "Open" >> fileio.ReadMatches()
        | "Parse" >> beam.ParDo(_ReadFile(fmt)).with_outputs(ERRORS, main="records")
    )
    return read.records, read[ERRORS]


# --- whole batches (the columnar path) -------------------------------------------------------------


def _parquet_batches(source: str, f: Any, batch_size: int, _features: Any) -> Iterable[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    # pre_buffer (pyarrow's default) keeps what it read ahead: the reading process grew by ~25%
    # over a 10,000,000-row file; without it memory stays flat
    for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=batch_size):
        yield Located(source, row, pa.Table.from_batches([batch]))
        row += batch.num_rows


def _tfrecord_batches(source: str, f: Any, batch_size: int, features: dict[str, str]) -> Iterable[Any]:
    """TFRecord files of tf.Examples as Arrow tables of ``features`` (name -> tf.Example kind),
    each column a list per row, decoded by tfx-bsl's C++ decoder."""
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders import example_coder

    kinds = {"bytes_list": schema_pb2.BYTES, "int64_list": schema_pb2.INT, "float_list": schema_pb2.FLOAT}
    schema = schema_pb2.Schema()
    for name, kind in features.items():
        feature = schema.feature.add()
        feature.name, feature.type = name, kinds[kind]
    decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
    row, chunk = 0, []
    try:
        for record in records(f):
            chunk.append(record)
            if len(chunk) == batch_size:
                yield Located(source, row, pa.Table.from_batches([decoder.DecodeBatch(chunk)]))
                row, chunk = row + len(chunk), []
    except ValueError as e:
        yield beam.pvalue.TaggedOutput(
            ERRORS, dead_letter(source, row + len(chunk), f"corrupt TFRecord file: {e}", b"")
        )
    if chunk:
        yield Located(source, row, pa.Table.from_batches([decoder.DecodeBatch(chunk)]))


BATCH_READERS = {"parquet": _parquet_batches, "tfrecord": _tfrecord_batches}
#: A reader of whole batches: (file name, open binary file, rows per batch, its options) ->
#: Located tables (position = the first row's) and tagged dead letters.
BatchReader = Callable[[str, Any, int, Any], Iterable[Any]]


class _ReadBatches(beam.DoFn):
    def __init__(self, read: BatchReader, batch_size: int, options: Any) -> None:
        self._read = read
        self._batch_size = batch_size
        self._options = options

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        path, size = readable.metadata.path, readable.metadata.size_in_bytes or 0
        # a compressed file's position is in its decompressed bytes: its share is known at its end
        plain = CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED
        PROGRESS.began()
        done = 0
        with readable.open() as f:

            def read() -> Iterator[tuple[Any, int]]:  # each item, and where the file was after it
                for item in self._read(path, f, self._batch_size, self._options):
                    yield item, (min(_tell(f), size) if plain else 0)

            # the next table is read (pyarrow releases the GIL) while this one is embedded; closed
            # (its thread joined) before the file is, also when downstream stops early
            with contextlib.closing(read_ahead(read(), depth=1)) as items:
                for item, at in items:
                    PROGRESS.read(max(at - done, 0), _rows(item))
                    done = max(done, at)
                    yield item
        PROGRESS.read(size - done, 0)


def _rows(item: Any) -> int:
    """The rows a reader's item holds: a located table's, or one (a dead letter)."""
    record = getattr(item, "record", None)
    return int(getattr(record, "num_rows", 1))


def _tell(f: Any) -> int:
    """Where a file being read is (0 when it cannot say)."""
    try:
        return f.tell()
    except (OSError, AttributeError, ValueError):
        return 0


def read_batches(
    p: beam.Pipeline, pattern: str, read: BatchReader, batch_size: int, options: Any = None
) -> tuple[beam.PCollection, beam.PCollection]:
    """``(batches, errors)``: :class:`Located` Arrow tables of about ``batch_size`` rows read by
    ``read`` from each file ``pattern`` matches (:data:`BATCH_READERS`: Parquet, and TFRecord files
    of tf.Examples whose ``options`` maps feature names to their kinds; pipelines.blocks: text,
    JSONL, CSV), and the dead letters of what could not be read."""
    read_ = (
        p
        | "Match" >> fileio.MatchFiles(pattern)
        | "Open" >> fileio.ReadMatches()
        | "Read" >> beam.ParDo(_ReadBatches(read, batch_size, options)).with_outputs(ERRORS, main="batches")
    )
    return read_.batches, read_[ERRORS]
