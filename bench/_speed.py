"""How fast this machine runs Python right now: a fixed workload's CPU time, to compare runs.

The machines these benches run on alternate between phases where the same code takes 1.5-2x
the CPU (neighbours on the host; no steal time shows). A CPU figure means little without
the phase it was taken in, so benches print `reference_cpu_ms` beside it: the CPU time of
the same pure-Python work (function calls, attribute and dict access, bytes slicing, the
kind of work a receiver does per frame), the best of a few tries.
"""

from __future__ import annotations

import time

_ROUNDS = 100_000
_TRIES = 5


class _Frame:
    __slots__ = ("payload", "seq")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload


def _work() -> int:
    """Per-frame-like Python: build, store, look up, slice, call."""
    frames: dict[int, _Frame] = {}
    data = bytes(range(256)) * 4
    total = 0
    for seq in range(_ROUNDS):
        frame = _Frame(seq, data[seq % 200 : seq % 200 + 80])
        frames[seq] = frame
        old = frames.pop(seq - 8, None)
        if old is not None:
            total += len(old.payload) + old.seq % 7
        total += int.from_bytes(frame.payload[:2], "big")
    return total


def reference_cpu_ms() -> float:
    """CPU milliseconds of the fixed workload (best of a few; lower is a faster machine)."""
    best = float("inf")
    for _ in range(_TRIES):
        start = time.process_time()
        _work()
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


if __name__ == "__main__":
    print(reference_cpu_ms())
