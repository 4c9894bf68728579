"""Stream a multipart upload to a temp file under the data dir, never holding it in memory."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from server.domain import DomainError

MAX_FIELD_BYTES = 10_000


class UploadError(DomainError):
    """A malformed or oversized upload; status and a plain-words message."""


@dataclass
class ReceivedUpload:
    """The file part (already on disk) and the small text fields."""

    file_path: Path
    fields: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    size: int = 0
    sha256: str = ""


class _Collector:
    """python-multipart callbacks: text fields into memory, the file part into a buffer."""

    def __init__(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.value = bytearray()
        self.pending_file = bytearray()  # flushed to disk by the reader after each chunk
        self.in_file = False
        self.file_seen = False
        self.file_filename = ""
        self.fields: dict[str, str] = {}
        self.error: UploadError | None = None
        self.complete = False  # the closing boundary arrived

    def on_part_begin(self) -> None:
        self.headers, self.value = {}, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = opts.get(b"name", b"").decode(errors="replace")
        raw_filename = opts.get(b"filename")
        self.filename = raw_filename.decode(errors="replace") if raw_filename is not None else None
        self.in_file = self.name == "file" and self.filename is not None
        if self.in_file:
            self.file_filename = self.filename or ""
            if self.file_seen:
                self.error = UploadError(422, "Send one file per upload.")
            self.file_seen = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pending_file += data[start:end]
        else:
            self.value += data[start:end]
            if len(self.value) > MAX_FIELD_BYTES:
                self.error = UploadError(413, f"The field {self.name!r} is too long.")

    def on_end(self) -> None:
        self.complete = True

    def on_part_end(self) -> None:
        if not self.in_file and self.name:
            self.fields[self.name] = self.value.decode(errors="replace")
        self.in_file = False


async def receive_upload(request: Request, *, dest: Path, max_bytes: int) -> ReceivedUpload:
    """Parse the request body; the `file` part goes to `dest`. Deletes `dest` on any failure."""
    try:
        return await _receive(request, dest=dest, max_bytes=max_bytes)
    except BaseException:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise


async def _receive(request: Request, *, dest: Path, max_bytes: int) -> ReceivedUpload:
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in opts:
        raise UploadError(415, "Send the clip as multipart/form-data with a 'file' field.")
    collector = _Collector()
    parser = MultipartParser(opts[b"boundary"], callbacks=_callbacks(collector))  # type: ignore[arg-type]
    digest = hashlib.sha256()
    size = 0
    out = await asyncio.to_thread(open, dest, "wb")
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if collector.error is not None:
                raise collector.error
            if collector.pending_file:
                data = bytes(collector.pending_file)
                collector.pending_file.clear()
                size += len(data)
                if size > max_bytes:
                    limit_mb = max_bytes // (1024 * 1024)
                    raise UploadError(413, f"The file is larger than the limit of {limit_mb} MB.")
                digest.update(data)
                await asyncio.to_thread(out.write, data)
        parser.finalize()
    except ClientDisconnect:
        raise UploadError(400, "The upload was interrupted before it finished.") from None
    except UploadError:
        raise
    except Exception as exc:  # python-multipart raises plain errors on a malformed body
        raise UploadError(400, f"The upload is not a valid multipart form ({exc}).") from None
    finally:
        await asyncio.to_thread(out.close)
    if not collector.complete:
        raise UploadError(400, "The upload was interrupted before it finished; send it again.")
    if not collector.file_seen:
        raise UploadError(422, "The 'file' field is missing: choose an audio file to upload.")
    return ReceivedUpload(
        fields=collector.fields,
        file_path=dest,
        filename=collector.file_filename,
        size=size,
        sha256=digest.hexdigest(),
    )


def _callbacks(c: _Collector) -> dict[str, object]:
    return {
        "on_part_begin": c.on_part_begin,
        "on_header_field": c.on_header_field,
        "on_header_value": c.on_header_value,
        "on_header_end": c.on_header_end,
        "on_headers_finished": c.on_headers_finished,
        "on_part_data": c.on_part_data,
        "on_part_end": c.on_part_end,
        "on_end": c.on_end,
    }
