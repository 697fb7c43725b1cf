"""A multipart/form-data body read from the file as it is sent, with a known length.

``requests`` builds multipart bodies in memory; videos and checkpoints can be gigabytes, and the
progress bar needs to know how much went out. A sized file-like object lets ``requests`` send a
Content-Length (servers refuse chunked uploads) and read the file in chunks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import BinaryIO

ProgressCallback = Callable[[int, int], None]  # (bytes sent, total bytes)


class MultipartStream:
    def __init__(self, head: bytes, file: BinaryIO, tail: bytes, progress: ProgressCallback | None) -> None:
        self._parts = [head, file, tail]
        self._file_start = file.tell()
        self._file_size = os.fstat(file.fileno()).st_size - self._file_start
        self.len = len(head) + self._file_size + len(tail)
        self._progress = progress
        self.seek(0)

    def __len__(self) -> int:
        return self.len

    def seek(self, offset: int, whence: int = 0) -> None:
        """Back to the start (a retried request sends the body again); only ``seek(0)`` is supported."""
        if offset or whence:
            raise OSError("only seek(0) is supported")
        self._part, self._offset, self._sent = 0, 0, 0
        self._parts[1].seek(self._file_start)

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        out = b""
        while len(out) < size and self._part < 3:
            part = self._parts[self._part]
            if isinstance(part, bytes):
                chunk = part[self._offset:self._offset + size - len(out)]
                self._offset += len(chunk)
            else:
                chunk = part.read(size - len(out))
            if not chunk:
                self._part, self._offset = self._part + 1, 0
                continue
            out += chunk
        self._sent += len(out)
        if self._progress and out:
            self._progress(self._sent, self.len)
        return out


def multipart_stream(fields: dict[str, str], file_field: str, filename: str, file: BinaryIO,
                     progress: ProgressCallback | None = None) -> tuple[MultipartStream, str]:
    """``(body, content_type)`` for ``fields`` plus one file part."""
    boundary = uuid.uuid4().hex
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items())
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(file_field)}"; '
             f'filename="{_quoted(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return MultipartStream(head, file, tail, progress), f"multipart/form-data; boundary={boundary}"


def _quoted(value: str) -> str:
    """A header parameter value: quotes and line breaks escaped as browsers do (WHATWG form encoding)."""
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
