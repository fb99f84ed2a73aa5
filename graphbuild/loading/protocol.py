"""Messages between graphbuild and its Starlark evaluator process: length-prefixed pickles.

Replies hold only plain data (str, int, float, bool, None, lists, tuples, dicts): the
unpickler graphbuild reads them with refuses any other type, so nothing the evaluator sends
can make graphbuild construct an object.
"""

from __future__ import annotations

import io
import pickle
import select
import struct
import time
from typing import IO, Any

_HEADER = struct.Struct("!Q")
#: A reply larger than this is refused (a BUILD file declaring gigabytes of attributes).
MAX_MESSAGE = 512 << 20


class ProtocolError(Exception):
    pass


class ReadTimeout(Exception):
    pass


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise ProtocolError(f"refused type {module}.{name} in a message")


def write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read(stream: IO[bytes], deadline: float | None = None) -> Any:
    """The next message from an unbuffered stream; EOFError when the other side is gone,
    ReadTimeout when `deadline` (a time.monotonic() value) passes first."""
    header = _read_exactly(stream, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
    return _PlainUnpickler(io.BytesIO(_read_exactly(stream, size, deadline))).load()


def _read_exactly(stream: IO[bytes], size: int, deadline: float | None) -> bytes:
    chunks = []
    while size:
        if deadline is not None:
            ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ReadTimeout
        chunk = stream.read(size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
