"""Sign-in attempt limiting: an in-process sliding window per (username, client address)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class LoginLimiter:
    """Counts failed sign-ins per key over the last `window_s` seconds; thread-safe."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
        return stamps

    def retry_after(self, *, username: str, ip: str) -> int:
        """Seconds to wait before trying again, or 0 when an attempt is allowed now."""
        key = (username.lower(), ip)
        with self._lock:
            now = self.clock()
            stamps = self._recent(key, now)
            if len(stamps) < self.max_failures:
                return 0
            return max(1, math.ceil(stamps[0] + self.window_s - now))

    def failed(self, *, username: str, ip: str) -> None:
        """Record a failed attempt."""
        key = (username.lower(), ip)
        with self._lock:
            now = self.clock()
            if key not in self._failures and len(self._failures) >= self.max_keys:
                # Memory stays bounded under a spray of usernames: forget the oldest entry.
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, *, username: str, ip: str) -> None:
        """A successful sign-in clears the key's failures."""
        with self._lock:
            self._failures.pop((username.lower(), ip), None)


def too_many_attempts_detail(seconds: int) -> str:
    """The 429 answer, in Vietnamese and English (the console and the API show the same)."""
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút. / "
        f"Too many failed sign-ins. Try again in {minutes} minute(s)."
    )
