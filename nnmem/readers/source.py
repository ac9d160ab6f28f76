"""Bounded reads from the start of a file: bytes, or a binary file object.

Both readers read a header and stop. A :class:`Source` hands out exactly the bytes
asked for, never more than ``limit`` in all, and turns every shortfall into an
:class:`~nnmem.errors.NnmemError` naming the file and what was being read. When the
bytes given are only the start of a longer file (a browser reads a dropped file in
slices), running past them raises :class:`NeedMoreBytes` instead, saying how many
bytes from the start would do.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from nnmem.errors import NnmemError

Readable = bytes | bytearray | memoryview | BinaryIO


class NeedMoreBytes(Exception):
    """The bytes given end inside the header of a longer file: read ``at_least`` bytes
    from its start and try again."""

    def __init__(self, at_least: int) -> None:
        super().__init__(f"read at least {at_least:,} bytes from the start of the file")
        self.at_least = at_least


def file_size(stream: BinaryIO) -> int | None:
    """The size of a seekable file object, or None."""
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        pass
    try:
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
        return end
    except (AttributeError, OSError, ValueError):
        return None


class Source:
    """Reads ``data`` from its current position, in exact amounts, within ``limit``.

    ``size`` is the whole file's size when ``data`` holds only its start. A file object
    is read in chunks of at most ``CHUNK`` bytes beyond what is asked, so the bytes held
    stay within ``limit + CHUNK``.

    >>> s = Source(b"abcdef", "x.bin", "file", limit=4)
    >>> s.take(2, "the magic"), s.pos
    (b'ab', 2)
    >>> s.take(3, "the version")
    Traceback (most recent call last):
    nnmem.errors.NnmemError: x.bin: the header is larger than the 4 bytes this reader accepts \
(reading the version at byte 2).
    """

    CHUNK = 1 << 20

    def __init__(
        self,
        data: Readable,
        name: str,
        field: str,
        limit: int,
        size: int | None = None,
    ) -> None:
        self.name, self.field, self.limit = name, field, limit
        self.pos = 0
        self.size: int | None
        self._stream: BinaryIO | None
        if isinstance(data, bytes | bytearray | memoryview):
            self.buffer: bytes | bytearray = bytes(data)
            self._stream = None
            self.size = len(self.buffer) if size is None else max(size, len(self.buffer))
        else:
            self.buffer, self._stream = bytearray(), data
            self.size = file_size(data) if size is None else size
            if data.seekable():
                data.seek(0)

    def fail(self, message: str) -> NnmemError:
        """The error for this file: its name, then ``message``."""
        return NnmemError.single(self.field, f"{self.name}: {message}")

    def ensure(self, end: int, what: str) -> None:
        """Make the first ``end`` bytes available, or fail naming ``what``."""
        if end > self.limit:
            raise self.fail(
                f"the header is larger than the {self.limit:,} bytes this reader accepts "
                f"(reading {what} at byte {self.pos:,})."
            )
        if end <= len(self.buffer):
            return
        if self.size is not None and end > self.size:
            raise self.fail(
                f"the file ends inside {what}: it needs {end - self.pos:,} bytes at byte "
                f"{self.pos:,} and the file has {self.size:,} (truncated?)."
            )
        if self._stream is None:
            raise NeedMoreBytes(end)
        assert isinstance(self.buffer, bytearray)
        want = min(max(end - len(self.buffer), self.CHUNK), self.limit - len(self.buffer))
        chunk = self._stream.read(want)
        self.buffer += chunk
        if end > len(self.buffer):
            raise self.fail(
                f"the file ends inside {what}: it needs {end - self.pos:,} bytes at byte "
                f"{self.pos:,} and only {len(self.buffer) - self.pos:,} are left (truncated?)."
            )

    def take(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes, for reading ``what``."""
        end = self.pos + n
        self.ensure(end, what)
        chunk = bytes(self.buffer[self.pos : end])
        self.pos = end
        return chunk

    def remaining(self) -> int | None:
        """Bytes left in the whole file, when its size is known."""
        return None if self.size is None else self.size - self.pos
