"""What the benchmarks that drive a real server share: JSON requests and the admin sign-in."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def request(base: str, path: str, token: str, body: Any = None, method: str = "GET") -> Any:
    """Call the API; JSON answers are decoded, anything else comes back as text."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
        return json.loads(text) if text[:1] in (b"{", b"[") else text.decode()


def sign_in(base: str, password: str) -> str:
    """The admin's bearer token, waiting up to 60 s for the server to start."""
    deadline = time.monotonic() + 60
    body = urllib.parse.urlencode({"username": "admin", "password": password}).encode()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/auth/token", body, timeout=5) as r:
                return str(json.loads(r.read())["access_token"])
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not start within 60 s")


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
