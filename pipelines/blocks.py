"""Text, JSONL and CSV files read as Arrow tables, a block of lines at a time.

A file is read in blocks of about ``BLOCK_BYTES`` of whole lines (a line over ``MAX_LINE_BYTES``
is a bad record, skipped in bounded pieces, never held whole). A clean block takes a fast path:
one UTF-8 check and one parse for the whole block (pyarrow's JSON reader; a split for text). A
block holding a bad line goes through the line-by-line readers of :mod:`pipelines.io`, for that
block only, so every bad record gets the dead letter it always got (file, 1-based line, error,
record) and one bad line costs one block, not the job's speed. CSV rows go through Python's C
csv reader across blocks (a quoted value may hold newlines), gathered into columns.

Every table carries ``ROW``, each row's 1-based line, beside its columns:

    text   id (the line number), text[, file]
    jsonl  the fields of ``Spec.schema`` (the text field at least); a row whose other fields do
           not fit it keeps only its text, with its line in ``RECORD`` and why in ``MISFIT``
           (the Parquet output sets it aside after embedding, as the row-by-row job did)
    csv    id (the id column, else the line number, as text), the text field
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam

from pipelines.io import (
    ERRORS,
    MAX_LINE_BYTES,
    RECORD_LIMIT,
    Located,
    TooLong,
    csv_rows,
    dead_letter,
    jsonl_records,
    text_records,
)

BLOCK_BYTES = 1 << 20
ROW = "__beam_hub_row"  #: each row's 1-based line (text formats) or 0-based row (Parquet, TFRecord)
SOURCE = "__beam_hub_source"  #: each row's file
MISFIT = "__beam_hub_misfit"  #: why a JSONL row's fields do not fit the schema (null when they do)
RECORD = "__beam_hub_record"  #: the line of such a row
_BOM = b"\xef\xbb\xbf"


class Spec(NamedTuple):
    """What a line format's reader needs to know besides the file."""

    fmt: str  # text | jsonl | csv
    text_field: str = "text"
    id_field: str = "id"
    schema: Any = None  # jsonl: the Arrow schema records are read into (the text field at least)
    with_file: bool = False  # text: add a ``file`` column (several input files)


class Block(NamedTuple):
    first: int  # the 1-based number of its first line
    lines: list[bytes]  # without their ends; a line over MAX_LINE_BYTES is a TooLong
    whole: bool = True  # no line in it is a TooLong

    def numbered(self) -> Iterator[tuple[int, bytes]]:
        return zip(range(self.first, self.first + len(self.lines)), self.lines)

    def utf8(self) -> bytes | None:
        """The lines joined by ``\\n`` when every line is whole and UTF-8, else None."""
        if not self.whole:
            return None
        data = b"\n".join(self.lines)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return data

    def text(self) -> str | None:
        """The lines joined by ``\\n`` as one string when every line is whole and UTF-8, else None."""
        if not self.whole:
            return None
        try:
            return b"\n".join(self.lines).decode("utf-8")
        except UnicodeDecodeError:
            return None


def line_blocks(f: Any, block_bytes: int | None = None) -> Iterator[Block]:
    """The lines of a binary file, about ``block_bytes`` (default BLOCK_BYTES) at a time, without
    their ends (``\\n`` or ``\\r\\n``); a UTF-8 byte order mark at the file's start is dropped."""
    block_bytes = block_bytes or BLOCK_BYTES
    number, carry, head = 1, b"", True
    while chunk := f.read(block_bytes):
        data = carry + chunk
        if head and (len(data) >= len(_BOM) or b"\n" in data):  # enough to tell a byte order mark
            data, head = data.removeprefix(_BOM), False
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE_BYTES:
                carry = _rest_after_line(f)
                yield Block(number, [TooLong(data[:RECORD_LIMIT])], whole=False)
                number += 1
            else:
                carry = data
            continue
        lines = data[:cut].split(b"\n")
        block, carry = _block(number, lines, long_lines=cut > MAX_LINE_BYTES), data[cut + 1 :]
        number += len(block.lines)
        yield block
    if carry:
        yield _block(number, [carry.removeprefix(_BOM) if head else carry])


def _block(first: int, lines: list[bytes], *, long_lines: bool = False) -> Block:
    """A block of ``lines``, ``\\r`` ends dropped; with ``long_lines`` (the block is larger than a
    line may be), lines over MAX_LINE_BYTES become TooLong."""
    whole = True
    if long_lines and any(len(line) > MAX_LINE_BYTES for line in lines):
        lines = [TooLong(line[:RECORD_LIMIT]) if len(line) > MAX_LINE_BYTES else line for line in lines]
        whole = False
    if any(line.endswith(b"\r") for line in lines):
        lines = [
            line[:-1] if line.endswith(b"\r") and not isinstance(line, TooLong) else line for line in lines
        ]
    return Block(first, lines, whole)


def _rest_after_line(f: Any) -> bytes:
    """Read on to the end of the current line in bounded pieces; return what follows it."""
    while piece := f.read(1 << 20):
        cut = piece.find(b"\n")
        if cut >= 0:
            return piece[cut + 1 :]
    return b""


def _located(source: str, table: Any) -> Located:
    return Located(source, table.column(ROW)[0].as_py(), table)


def _gathered(source: str, items: Iterable[Any], rows: int) -> Iterator[Any]:
    """Tables of at least ``rows`` rows (blocks put together) and the dead letters as they come."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for item in items:
        if isinstance(item, beam.pvalue.TaggedOutput):
            yield item
            continue
        pending.append(item)
        count += item.num_rows
        if count >= rows:
            yield _located(source, pa.concat_tables(pending, promote_options="default"))
            pending, count = [], 0
    if count:
        yield _located(source, pa.concat_tables(pending, promote_options="default"))


# --- text --------------------------------------------------------------------------------------


def read_text(source: str, f: Any, rows: int, spec: Spec) -> Iterator[Any]:
    return _gathered(
        source, (item for block in line_blocks(f) for item in _text_block(source, block, spec)), rows
    )


def _text_block(source: str, block: Block, spec: Spec) -> Iterator[Any]:
    import pyarrow as pa

    text = block.text()
    if text is not None:
        kept = [(block.first + i, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    else:
        kept = []
        for item in text_records(source, block.numbered()):
            if isinstance(item, beam.pvalue.TaggedOutput):
                yield item
            else:
                kept.append((item.position, item.record["text"]))
    if not kept:
        return
    numbers, texts = zip(*kept)
    ids = pa.array(numbers, pa.int64())
    columns = {"id": ids, "text": pa.array(texts, pa.string())}
    if spec.with_file:
        columns["file"] = pa.array([source] * len(ids), pa.string())
    columns[ROW] = ids
    yield pa.table(columns)


# --- JSONL -------------------------------------------------------------------------------------


def read_jsonl(source: str, f: Any, rows: int, spec: Spec) -> Iterator[Any]:
    return _gathered(
        source, (item for block in line_blocks(f) for item in _jsonl_block(source, block, spec)), rows
    )


def _jsonl_block(source: str, block: Block, spec: Spec) -> Iterator[Any]:
    """One JSONL block: one table (pyarrow's reader when every line is one object that fits the
    schema, else line by line) and the dead letters of its bad lines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = block.utf8()
    kept = [block.first + i for i, line in enumerate(block.lines) if line.strip()] if data is not None else []
    table = _read_json(data, len(kept), spec.schema) if kept else None
    if table is None:
        yield from _jsonl_slow(source, block, spec)
        return
    column = table.column(spec.text_field)
    if column.null_count:  # a missing or null text: the line-by-line reader says which
        valid = pc.is_valid(column)
        for i in pc.invert(valid).to_numpy(zero_copy_only=False).nonzero()[0]:
            number = kept[int(i)]
            for item in _jsonl_slow(source, Block(number, [block.lines[number - block.first]]), spec):
                if isinstance(item, beam.pvalue.TaggedOutput):
                    yield item
        table = table.filter(valid)
        kept = [kept[i] for i in pc.indices_nonzero(valid).to_pylist()]
    if kept:
        yield table.append_column(ROW, pa.array(kept, pa.int64()))


def _read_json(data: bytes, rows: int, schema: Any) -> Any:
    """The lines as one table in ``schema``, or None when pyarrow cannot read them as one object
    a line that fits it (a malformed line, a value of another type, two objects on one line)."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 64),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == rows else None


def _jsonl_slow(source: str, block: Block, spec: Spec) -> Iterator[Any]:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    for item in jsonl_records(source, block.numbered()):
        if isinstance(item, beam.pvalue.TaggedOutput):
            yield item
            continue
        letter = _text_letter(item, spec.text_field)
        if letter is not None:
            yield beam.pvalue.TaggedOutput(ERRORS, letter)
            continue
        records.append(item.record)
        numbers.append(item.position)
    if records:
        yield _records_table(records, numbers, [block.lines[n - block.first] for n in numbers], spec)


def _text_letter(located: Located, field: str) -> dict[str, Any] | None:
    """The dead letter of a record without a usable text, as the row-by-row job wrote it."""
    text = located.record.get(field)
    if isinstance(text, str):
        return None
    why = "missing" if field not in located.record else f"not a string but {type(text).__name__}"
    return dead_letter(located.source, located.position, f"the text field {field!r} is {why}", located.record)


def _records_table(records: list[dict[str, Any]], numbers: list[int], lines: list[bytes], spec: Spec) -> Any:
    """Records read line by line, in ``spec.schema``; a record whose fields do not fit keeps only
    its text, with its line in RECORD and the reason in MISFIT."""
    import pyarrow as pa

    bad = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
    try:
        table = pa.Table.from_pylist(records, schema=spec.schema)
        misfits: list[str | None] = []
    except bad:
        rows, misfits = [], []
        for record in records:
            try:
                pa.RecordBatch.from_pylist([record], schema=spec.schema)
                rows.append(record)
                misfits.append(None)
            except bad as e:
                rows.append({spec.text_field: record[spec.text_field]})
                misfits.append(str(e))
        table = pa.Table.from_pylist(rows, schema=spec.schema)
    table = table.append_column(ROW, pa.array(numbers, pa.int64()))
    if misfits:
        raw = [line.decode("utf-8") if why else None for line, why in zip(lines, misfits)]
        table = table.append_column(MISFIT, pa.array(misfits, pa.string()))
        table = table.append_column(RECORD, pa.array(raw, pa.string()))
    return table


# --- CSV ---------------------------------------------------------------------------------------


def read_csv(source: str, f: Any, rows: int, spec: Spec) -> Iterator[Any]:
    """Rows (the header first) as tables of id and text, read by :func:`pipelines.io.csv_rows`
    over the file's blocks: per row, only the fields are looked at, no dict is built."""
    lines = (pair for block in line_blocks(f) for pair in block.numbered())
    ids: list[str] = []
    texts: list[str] = []
    numbers: list[int] = []
    header: list[str] = []
    text_at = id_at = None
    for item in csv_rows(source, lines):
        if isinstance(item, list):  # the header
            header = item
            text_at = header.index(spec.text_field) if spec.text_field in header else None
            id_at = header.index(spec.id_field) if spec.id_field in header else None
            continue
        if isinstance(item, beam.pvalue.TaggedOutput):
            yield item
            continue
        start, row = item
        if text_at is None:  # another file than the first, without the text column
            error = f"the text field {spec.text_field!r} is missing"
            yield beam.pvalue.TaggedOutput(ERRORS, dead_letter(source, start, error, dict(zip(header, row))))
            continue
        numbers.append(start)
        texts.append(row[text_at])
        ids.append(row[id_at] if id_at is not None else str(start))
        if len(numbers) >= rows:
            yield _csv_table(source, ids, texts, numbers, spec)
            ids, texts, numbers = [], [], []
    if numbers:
        yield _csv_table(source, ids, texts, numbers, spec)


def _csv_table(source: str, ids: list[str], texts: list[str], numbers: list[int], spec: Spec) -> Located:
    import pyarrow as pa

    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            spec.text_field: pa.array(texts, pa.string()),
            ROW: pa.array(numbers, pa.int64()),
        }
    )
    return Located(source, numbers[0], table)


READERS = {"text": read_text, "jsonl": read_jsonl, "csv": read_csv}
