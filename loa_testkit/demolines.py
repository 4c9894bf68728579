"""A demo process's output, read by a thread so that waiting for a line can time out."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time


class DemoLines:
    """Lines a running `loa-server demo` printed, waited for by pattern."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        stdout = proc.stdout

        def read() -> None:
            for line in iter(stdout.readline, ""):
                self.queue.put(line)

        threading.Thread(target=read, daemon=True).start()

    def until(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line (from here on) matching the pattern; fails after the timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}")
