"""What the jobs share: command-line defaults, logging, finding input files and reading records.

Record formats, chosen by extension (or a flag):

| format   | extensions                   | one record is                                          |
|----------|------------------------------|--------------------------------------------------------|
| text     | .txt .text                   | a line: {"id": line number, "text": line}              |
| jsonl    | .jsonl .json .ndjson         | a line holding a JSON object                           |
| csv      | .csv                         | a row, keyed by the header                             |
| parquet  | .parquet                     | a row                                                  |
| tfrecord | .tfrecord .tfrecords .tfrec  | a tf.train.Example, features as values (lists if many) |
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

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


def with_default_runner(argv: Sequence[str]) -> list[str]:
    """``argv`` plus ``--runner=FnApiRunner`` unless a runner is named (local and in-process:
    Beam's DirectRunner would first try to download the Prism runner)."""
    argv = list(argv)
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append("--runner=FnApiRunner")
    return argv


def setup_logging() -> None:
    """beam-hub's own progress lines on stderr; Beam's and absl's only when they warn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
                f"cannot tell the format of {pattern!r} from its extension; pass {flag} "
                f"({', '.join(allowed)})"
            )
        fmt = INPUT_FORMATS[ext]
    if fmt not in allowed:
        raise ValueError(f"{pattern!r}: {fmt} input is not supported here; use {', '.join(allowed)}")
    return fmt


# --- record readers ------------------------------------------------------------------------------


class Located(NamedTuple):
    """A record and where it came from: the file and its 1-based line (text formats) or row."""

    source: str
    position: int
    record: Any


def lines(readable: fileio.ReadableFile) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) of a UTF-8 text file."""
    with readable.open() as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", newline=""), start=1):
            yield number, line.rstrip("\r\n")


def _text(readable: fileio.ReadableFile) -> Iterable[Located]:
    path = readable.metadata.path
    for number, line in lines(readable):
        yield Located(path, number, {"text": line})


def _jsonl(readable: fileio.ReadableFile) -> Iterable[Located]:
    path = readable.metadata.path
    for number, line in lines(readable):
        if line.strip():
            yield Located(path, number, json.loads(line))


def _csv(readable: fileio.ReadableFile) -> Iterable[Located]:
    path = readable.metadata.path
    with readable.open() as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        start = 2  # the line after the header
        for row in reader:
            yield Located(path, start, row)
            start = reader.line_num + 1


def csv_header(path: str) -> list[str]:
    """The column names of a CSV file's header."""
    with FileSystems.open(path) as raw:
        return next(csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")), [])


_LINE_READERS = {"text": _text, "jsonl": _jsonl, "csv": _csv}


def read_records(p: beam.Pipeline, pattern: str, fmt: str) -> beam.PCollection:
    """Every record of the files ``pattern`` matches (see the table above).

    Text formats give :class:`Located` records (file and line); Parquet and TFRecord give the
    records alone (their sources split files, so no position is known).
    """
    if fmt == "parquet":
        return p | "Read" >> beam.io.ReadFromParquet(pattern)
    if fmt == "tfrecord":
        from beam_hub.examples import to_dict

        return p | "Read" >> beam.io.ReadFromTFRecord(pattern) | "Parse" >> beam.Map(to_dict)
    if fmt not in _LINE_READERS:
        raise ValueError(f"unknown record format {fmt!r}; use one of {', '.join(FORMAT_NAMES)}")
    return (
        p
        | "Match" >> fileio.MatchFiles(pattern)
        | "Open" >> fileio.ReadMatches()
        | "Parse" >> beam.FlatMap(_LINE_READERS[fmt])
    )
