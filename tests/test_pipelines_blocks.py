"""The block readers (pipelines/blocks.py) against the line-by-line readers on messy files.

Every file is read both ways, with blocks as small as 7 bytes (so block boundaries fall inside
multi-byte characters, CRLF pairs, JSON objects and quoted CSV values) and as large as the
default; the rows (with their line numbers) and the dead letters must be the same.
"""

from __future__ import annotations

import io
import json

import apache_beam as beam
import pyarrow as pa
import pytest

from pipelines import blocks
from pipelines import io as pio

BLOCKS = [7, 64, 1000, None]  # bytes a block (None: the default)
SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string()), ("n", pa.int64())])


def split(items):
    tables, letters = [], []
    for item in items:
        if isinstance(item, beam.pvalue.TaggedOutput):
            letters.append(item.value)
        else:
            tables.append(item)
    return tables, sorted(letters, key=lambda d: (d["position"], d["error"]))


def block_rows(read, data: bytes, spec: blocks.Spec, block_bytes, monkeypatch, rows: int = 5):
    if block_bytes:
        monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    located, letters = split(read("f", io.BytesIO(data), rows, spec))
    out = {}
    for item in located:
        assert item.position == item.record.column(blocks.ROW)[0].as_py()
        for row in item.record.to_pylist():
            out[row.pop(blocks.ROW)] = row
    return out, letters


# --- text ------------------------------------------------------------------------------------------

TEXT = (
    ("\ufefffirst line\r\nsecond — with a dash\n\n   \t \n日本語のテキスト\r\n").encode()
    + b"caf\xe9 is Latin-1\n"
    + "emoji 🧪🧪🧪 and more\nlast line without an end".encode()
)


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_text_blocks_read_as_the_lines_do(block_bytes, monkeypatch):
    expected, letters = {}, []
    for item in pio.text_records("f", pio._lines(io.BytesIO(TEXT))):
        if isinstance(item, beam.pvalue.TaggedOutput):
            letters.append(item.value)
        else:
            expected[item.position] = {"id": item.position, "text": item.record["text"]}
    got, got_letters = block_rows(blocks.read_text, TEXT, blocks.Spec("text"), block_bytes, monkeypatch)
    assert got == expected and got_letters == letters
    assert got[1]["text"] == "first line" and 8 in got  # the BOM and CR are gone; the last line counts
    assert [d["position"] for d in letters] == [6]


def test_text_blocks_name_the_file_when_asked(monkeypatch):
    got, _ = block_rows(blocks.read_text, b"a\nb\n", blocks.Spec("text", with_file=True), None, monkeypatch)
    assert got == {1: {"id": 1, "text": "a", "file": "f"}, 2: {"id": 2, "text": "b", "file": "f"}}


# --- JSONL -----------------------------------------------------------------------------------------

JSONL_LINES = [
    b'\xef\xbb\xbf{"id": 1, "text": "first", "n": 10}',
    b'{"id": 2, "text": "caf\xc3\xa9 \xf0\x9f\xa7\xaa", "n": 20, "extra": [1, 2]}\r',
    b"",
    b"   ",
    b'{"id": 3, "text": oops}',  # malformed
    b'["not", "an", "object"]',
    b'{"id": 4}',  # no text
    b'{"id": 5, "text": null}',
    b'{"id": 6, "text": 42}',
    b'{"id": 7, "text": "caf\xe9"}',  # Latin-1
    b'{"id": 8, "text": "one"} {"id": 9, "text": "two"}',  # two objects: json.loads refuses
    b'{"id": 10, "text": "dup", "text": "last wins"}',  # json.loads keeps the last
    b'{"id": "eleven", "text": "an id that does not fit"}',  # a misfit: embedded, then set aside
    b'{"id": 12, "text": "big", "n": 123456789012345678901234567890}',  # past int64: a misfit
    b'{"id": 13, "text": "' + "ü".encode() * 40 + b'", "n": 13}',
    b'{"id": 14, "text": "last line, no newline", "n": 14}',
]
JSONL = b"\n".join(JSONL_LINES)


def jsonl_expected():
    expected, letters = {}, []
    for item in pio.jsonl_records("f", pio._lines(io.BytesIO(JSONL))):
        if isinstance(item, beam.pvalue.TaggedOutput):
            letters.append(item.value)
            continue
        letter = blocks._text_letter(item, "text")
        if letter is not None:
            letters.append(letter)
            continue
        row = {name: item.record.get(name) for name in SCHEMA.names}
        try:
            pa.RecordBatch.from_pylist([row], schema=SCHEMA)
            row.update({blocks.MISFIT: None, blocks.RECORD: None})
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            raw = JSONL_LINES[item.position - 1].decode()
            row = {
                "id": None,
                "text": item.record["text"],
                "n": None,
                blocks.MISFIT: str(e),
                blocks.RECORD: raw,
            }
        expected[item.position] = row
    return expected, sorted(letters, key=lambda d: (d["position"], d["error"]))


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_jsonl_blocks_read_as_the_lines_do(block_bytes, monkeypatch):
    expected, letters = jsonl_expected()
    got, got_letters = block_rows(
        blocks.read_jsonl, JSONL, blocks.Spec("jsonl", schema=SCHEMA), block_bytes, monkeypatch
    )
    for row in got.values():  # a table without misfits has no misfit columns
        row.setdefault(blocks.MISFIT, None)
        row.setdefault(blocks.RECORD, None)
    assert got_letters == letters
    assert got == expected
    assert {p for p, r in got.items() if r[blocks.MISFIT]} == {13, 14}
    assert got[12]["text"] == "last wins" and got[1]["text"] == "first"
    errors = {d["position"]: d["error"] for d in letters}
    assert (
        errors[7] == "the text field 'text' is missing"
        and errors[9] == "the text field 'text' is not a string but int"
    )
    assert errors[8] == "the text field 'text' is not a string but NoneType"
    assert errors[11].startswith("malformed JSON: Extra data")


def test_a_clean_jsonl_file_takes_the_fast_path(monkeypatch):
    """No line falls back to json.loads when every block is clean."""
    data = b"".join(json.dumps({"id": i, "text": f"t{i}", "n": i}).encode() + b"\n" for i in range(1000))
    monkeypatch.setattr(pio, "json", None)  # the line-by-line reader would fail without it
    got, letters = block_rows(
        blocks.read_jsonl, data, blocks.Spec("jsonl", schema=SCHEMA), 4096, monkeypatch, 300
    )
    assert not letters and sorted(got) == list(range(1, 1001)) and got[1000]["text"] == "t999"


# --- CSV -------------------------------------------------------------------------------------------

CSV = (
    b"\xef\xbb\xbfkey,body,lang\r\n"
    b"a,first text,en\r\n"
    b'b,"a quoted\r\nvalue over\nthree lines",en\n'
    b"c,too,many,fields\n"
    b"\n"
    b" , ,\n"  # every field blank: skipped
    b"d,caf\xe9,fr\n"
    b'e,"an ""escaped"" quote, and a comma",en\n'
    b"f,\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e,ja\n"
    b"g,,en\n"  # an empty text is still a text
    b"h,no newline at the end,en"
)


@pytest.mark.parametrize("block_bytes", BLOCKS)
@pytest.mark.parametrize("id_field", ["key", "absent"])
def test_csv_blocks_read_as_the_rows_do(block_bytes, id_field, monkeypatch):
    expected, letters = {}, []
    for item in pio._csv("f", io.BytesIO(CSV)):
        if isinstance(item, beam.pvalue.TaggedOutput):
            letters.append(item.value)
        else:
            ident = item.record.get(id_field, str(item.position))
            expected[item.position] = {"id": ident, "body": item.record["body"]}
    spec = blocks.Spec("csv", "body", id_field)
    got, got_letters = block_rows(blocks.read_csv, CSV, spec, block_bytes, monkeypatch)
    assert got == expected and got_letters == sorted(letters, key=lambda d: (d["position"], d["error"]))
    assert got[3]["body"] == "a quoted\nvalue over\nthree lines" and set(got) == {2, 3, 10, 11, 12, 13}
    assert got[10]["body"] == 'an "escaped" quote, and a comma' and got[12]["body"] == ""
    assert {d["position"]: d["error"] for d in letters} == {
        6: "malformed CSV: 4 fields where the header has 3",
        9: "invalid UTF-8",
    }


def test_a_csv_file_without_the_text_column_sets_its_rows_aside():
    spec = blocks.Spec("csv", "body", "key")
    located, letters = split(blocks.read_csv("g", io.BytesIO(b"key,other\nx,1\ny,2\n"), 10, spec))
    assert not located
    assert [(d["position"], d["error"]) for d in letters] == [
        (2, "the text field 'body' is missing"),
        (3, "the text field 'body' is missing"),
    ]


def test_an_over_long_line_is_one_bad_record_in_any_block(monkeypatch):
    monkeypatch.setattr(pio, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(blocks, "MAX_LINE_BYTES", 100)
    data = (
        b'{"id": 1, "text": "short"}\n{"id": 2, "text": "' + b"y" * 500 + b'"}\n{"id": 3, "text": "after"}\n'
    )
    for block_bytes in (16, 64, 4096):
        got, letters = block_rows(
            blocks.read_jsonl, data, blocks.Spec("jsonl", schema=SCHEMA), block_bytes, monkeypatch
        )
        assert sorted(got) == [1, 3]
        assert [(d["position"], d["error"]) for d in letters] == [(2, "the line is longer than 100 bytes")]


def test_csv_rows_set_aside_a_row_with_a_bad_byte_on_any_of_its_lines_and_only_that_row():
    data = (
        b"key,body\n"
        b'a,"first line\nsecond line with caf\xe9"\n'  # the bad byte on a continuation line
        b"b,clean after it\n"
        b'c,"caf\xe9 on the first line\nthen clean"\n'
        b"d,clean again\n"
    )
    lines = list(enumerate(data.split(b"\n")[:-1], start=1))
    items = list(pio.csv_rows("f", lines))
    assert items[0] == ["key", "body"]
    rows = [item for item in items[1:] if not isinstance(item, beam.pvalue.TaggedOutput)]
    letters = [item.value for item in items[1:] if isinstance(item, beam.pvalue.TaggedOutput)]
    assert rows == [(4, ["b", "clean after it"]), (7, ["d", "clean again"])]
    assert [(d["position"], d["error"]) for d in letters] == [(2, "invalid UTF-8"), (5, "invalid UTF-8")]
