"""Binary live-audio frames: one Opus packet with its sequence number and capture time.

Layout (big-endian), 20-byte header (28 in format 2) then the payload:

    offset size field
    0      4    magic b"LOAL"
    4      1    format version (1 or 2)
    5      1    codec (1 = Opus)
    6      1    flags (bit 0: last frame of the session; other bits zero)
    7      1    reserved, zero
    8      4    sequence number (u32, +1 per frame from 0)
    12     8    capture time (u64), microseconds since the Unix epoch on the server clock
    20     8    format 2 only: send time (u64), the same clock, read just before publishing
    20/28  ...  payload: one Opus packet of the session's frame duration (20 ms)

The send time gives a device one way of timing per frame, fifty a second: the server clock
was at least `send time` when the frame arrived, a lower bound on its clock offset that
probes answered behind live frames cannot give (edge_agent/clocksync.py).

Frames travel at QoS 0 on loa/v1/zone/<zone>/live/<session>: a lost frame is concealed by
the receiver, never re-sent, because a late frame is useless.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"LOAL"
FORMAT_VERSION = 2  # what the server sends; format 1 (no send time) is still read
FORMATS = (1, 2)
CODEC_OPUS = 1
FLAG_LAST = 0x01
_HEADER = struct.Struct(">4sBBBBIQ")
_SENT = struct.Struct(">Q")
HEADER_SIZE = _HEADER.size  # 20, format 1
HEADER_SIZE_V2 = HEADER_SIZE + _SENT.size  # 28
# An Opus packet of 20 ms is at most 1275 bytes (RFC 6716); leave room for 60 ms frames.
MAX_PAYLOAD = 4000
MAX_FRAME_BYTES = HEADER_SIZE_V2 + MAX_PAYLOAD
MAX_SEQ = 2**32 - 1


class FrameError(ValueError):
    """A payload that is not a valid live frame; the text says why."""


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """One frame of a live session."""

    seq: int
    capture_us: int  # server clock, microseconds since the Unix epoch
    payload: bytes
    last: bool = False
    codec: int = CODEC_OPUS
    sent_us: int | None = None  # server clock just before publishing (format 2), or None

    @property
    def capture_time(self) -> float:
        """Capture time in Unix seconds (server clock)."""
        return self.capture_us / 1_000_000

    @property
    def sent_time(self) -> float | None:
        """Send time in Unix seconds (server clock), if the frame carries one."""
        return None if self.sent_us is None else self.sent_us / 1_000_000


def encode_frame(frame: LiveFrame) -> bytes:
    """Serialise a frame with its header (raises FrameError for out-of-range fields)."""
    if not 0 <= frame.seq <= MAX_SEQ:
        raise FrameError(f"sequence number {frame.seq} does not fit in 32 bits")
    if not 0 <= frame.capture_us < 2**64:
        raise FrameError(f"capture time {frame.capture_us} us does not fit in 64 bits")
    if len(frame.payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    flags = FLAG_LAST if frame.last else 0
    if frame.sent_us is None:
        return _HEADER.pack(MAGIC, 1, frame.codec, flags, 0, frame.seq, frame.capture_us) + (
            frame.payload
        )
    if not 0 <= frame.sent_us < 2**64:
        raise FrameError(f"send time {frame.sent_us} us does not fit in 64 bits")
    header = _HEADER.pack(MAGIC, 2, frame.codec, flags, 0, frame.seq, frame.capture_us)
    return header + _SENT.pack(frame.sent_us) + frame.payload


def decode_frame(data: bytes) -> LiveFrame:
    """Parse a frame, or raise FrameError saying why it is not one."""
    if len(data) < HEADER_SIZE:
        raise FrameError(f"{len(data)} bytes is shorter than a live frame header")
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"{len(data)} bytes is longer than a live frame may be")
    magic, version, codec, flags, _reserved, seq, capture_us = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError("bad magic: not a live audio frame")
    if version not in FORMATS:
        raise FrameError(f"unsupported live frame format {version}")
    if codec != CODEC_OPUS:
        raise FrameError(f"unknown codec {codec} (only 1 = Opus is defined)")
    sent_us, start = None, HEADER_SIZE
    if version == 2:
        if len(data) < HEADER_SIZE_V2:
            raise FrameError(f"{len(data)} bytes is shorter than a format 2 frame header")
        (sent_us,) = _SENT.unpack_from(data, HEADER_SIZE)
        start = HEADER_SIZE_V2
    if len(data) - start > MAX_PAYLOAD:
        raise FrameError(f"{len(data)} bytes is longer than a live frame may be")
    return LiveFrame(
        seq=seq,
        capture_us=capture_us,
        payload=data[start:],
        last=bool(flags & FLAG_LAST),
        codec=codec,
        sent_us=sent_us,
    )
