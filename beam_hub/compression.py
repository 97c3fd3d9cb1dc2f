"""Compressed archives read as gzip, bzip2 and xz read them: stream after stream, in bounded pieces.

tarfile's stream mode (and tensorflow_hub with it) stops after the first gzip member or bzip2/xz
stream, so an archive compressed in parallel (pbzip2 writes one bzip2 stream per block) or
appended to (``gzip -c part >> m.tar.gz``) ends early there. Here the bytes after a stream start
the next one when they begin with its magic number; anything else after the last stream (zero
padding) is left in ``rest`` for the caller to judge. Each call returns at most one chunk of
output, so a small input that expands enormously never sits in memory whole.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

_CHUNK = 1 << 20

#: Magic number -> a new decompressor for one stream.
FORMATS: dict[bytes, Callable[[], Any]] = {
    b"\x1f\x8b": lambda: zlib.decompressobj(wbits=31),  # gzip, header and trailer checked
    b"BZh": bz2.BZ2Decompressor,
    b"\xfd7zXZ\x00": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
}


class CorruptStreamError(ValueError):
    """The compressed data is damaged or ends before its stream does."""


def decompressing(raw: BinaryIO, head: bytes) -> Streams | None:
    """A reader of ``raw``'s decompressed bytes when ``head`` starts gzip, bzip2 or xz; else None."""
    for magic, new in FORMATS.items():
        if head.startswith(magic):
            return Streams(raw, magic, new)
    return None


class Streams(io.RawIOBase):
    """The decompressed bytes of one stream after another (see the module docstring)."""

    def __init__(self, raw: BinaryIO, magic: bytes, new: Callable[[], Any]) -> None:
        self._raw = raw
        self._magic = magic
        self._new = new
        self._dec = new()
        self._zlib = magic == b"\x1f\x8b"
        self._pending = b""  # raw bytes read but not yet given to a decompressor
        self._out = memoryview(b"")
        self._done = False
        self.streams = 1
        self.rest = b""  # what followed the last stream, once it ended

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            if self._done:
                return 0
            if self._dec.eof:
                if not self._next_stream():
                    self._done = True
                    return 0
                continue
            self._out = memoryview(self._step())
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _step(self) -> bytes:
        dec = self._dec
        try:
            if self._zlib:
                return dec.decompress(dec.unconsumed_tail or self._input(), _CHUNK)
            return dec.decompress(self._input() if dec.needs_input else b"", _CHUNK)
        except (zlib.error, OSError, lzma.LZMAError) as e:
            raise CorruptStreamError(f"the compressed data is damaged ({e})") from None

    def _input(self) -> bytes:
        data, self._pending = self._pending or self._raw.read(_CHUNK), b""
        if not data:
            raise CorruptStreamError("the compressed data ends before its stream does (truncated?)")
        return data

    def _next_stream(self) -> bool:
        rest, self._pending = self._dec.unused_data + self._pending, b""
        while len(rest) < len(self._magic) and (more := self._raw.read(_CHUNK)):
            rest += more
        if rest.startswith(self._magic):
            self._dec, self._pending = self._new(), rest
            self.streams += 1
            return True
        self.rest = rest
        return False
