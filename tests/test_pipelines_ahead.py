"""Reading ahead and writing behind on a second thread: same order, errors where they belong,
nothing left running."""

import threading

import pytest

from pipelines.ahead import WriteBehind, read_ahead


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_read_ahead_keeps_the_order_and_ends():
    assert list(read_ahead(iter(range(1000)), depth=1)) == list(range(1000))
    assert list(read_ahead(iter([]), depth=3)) == []
    assert not _threads("beam-hub-read-ahead")


def test_an_error_while_reading_comes_where_the_item_would_have():
    def items():
        yield 1
        yield 2
        raise ValueError("line 3 is broken")

    got = []
    with pytest.raises(ValueError, match="line 3 is broken"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1, 2]
    assert not _threads("beam-hub-read-ahead")


def test_closing_early_stops_the_reader_within_its_depth():
    produced = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # a downstream failure closes the generator
    assert not _threads("beam-hub-read-ahead")
    assert len(produced) <= 3 + 2 + 1  # taken, queued, and the one being put when it stopped


def test_write_behind_writes_everything_in_order_by_close():
    written = []
    behind = WriteBehind(written.append, depth=2)
    for i in range(500):
        behind.put(i)
    behind.close()
    assert written == list(range(500))
    assert not _threads("beam-hub-write-behind")


def test_a_write_error_is_raised_to_the_writer_and_stops_writing():
    written = []

    def write(value):
        if value == 3:
            raise OSError("disk full")
        written.append(value)

    behind = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            behind.put(i)
        behind.close()
    with pytest.raises(OSError, match="disk full"):
        behind.close()
    assert written == [0, 1, 2]
    assert not _threads("beam-hub-write-behind")
