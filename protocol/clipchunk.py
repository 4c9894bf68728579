"""Binary clip chunks: how a clip travels over MQTT, once per zone.

Layout (big-endian), 52-byte header then the data:

    offset size field
    0      4    magic b"LOAC"
    4      1    format version (1)
    5      32   sha256 of the whole clip file (raw bytes)
    37     4    chunk index (0-based)
    41     4    chunk count
    45     4    CRC-32 of this chunk's data
    49     3    reserved, zero
    52     ...  data (CHUNK_SIZE bytes except in the last chunk)

The total size is implied: (count - 1) * chunk size + size of the last chunk, and each
chunk's offset is index * CHUNK_SIZE. A chunk whose CRC does not match is dropped and
asked for again; the whole file is checked against its sha256 before it may play.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"LOAC"
FORMAT_VERSION = 1
CHUNK_SIZE = 64 * 1024
_HEADER = struct.Struct(">4sB32sIII3x")
HEADER_SIZE = _HEADER.size  # 52


class ChunkError(ValueError):
    """A payload that is not a valid clip chunk."""


@dataclass(frozen=True)
class Chunk:
    """One piece of a clip."""

    sha256: str
    index: int
    count: int
    data: bytes


def encode_chunk(chunk: Chunk) -> bytes:
    """Serialise a chunk with its header and CRC."""
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        bytes.fromhex(chunk.sha256),
        chunk.index,
        chunk.count,
        zlib.crc32(chunk.data),
    )
    return header + chunk.data


def decode_chunk(payload: bytes) -> Chunk:
    """Parse and CRC-check a chunk, or raise ChunkError saying why."""
    if len(payload) < HEADER_SIZE:
        raise ChunkError(f"payload of {len(payload)} bytes is shorter than a chunk header")
    magic, version, sha, index, count, crc = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ChunkError("bad magic")
    if version != FORMAT_VERSION:
        raise ChunkError(f"unsupported chunk format {version}")
    if count < 1 or index >= count:
        raise ChunkError(f"chunk {index} of {count} is out of range")
    data = payload[HEADER_SIZE:]
    if len(data) > CHUNK_SIZE or (index < count - 1 and len(data) != CHUNK_SIZE):
        raise ChunkError(f"chunk {index} has {len(data)} bytes")
    if zlib.crc32(data) != crc:
        raise ChunkError(f"chunk {index} is corrupt (CRC mismatch)")
    return Chunk(sha256=sha.hex(), index=index, count=count, data=data)


def chunk_count(size: int) -> int:
    """How many chunks a file of `size` bytes needs (an empty file still has one)."""
    return max(1, -(-size // CHUNK_SIZE))


def split(data: bytes, sha256: str | None = None) -> Iterator[Chunk]:
    """Cut a whole clip file into chunks."""
    sha = sha256 or hashlib.sha256(data).hexdigest()
    count = chunk_count(len(data))
    for i in range(count):
        yield Chunk(sha, i, count, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
