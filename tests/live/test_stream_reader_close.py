"""A relay stopped while its stream is being decoded never crashes the server.

The relay's reader decodes in a worker thread; stopping the relay cancels the task, not the
thread, and the reader is closed from another thread. Closing FFmpeg's context under a running
decoder was a segfault (the whole server process went down). Each round here closes a reader at
a random moment while it decodes a fast local stream; the rounds run in a child process so a
crash is a failed test, not a dead test run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHILD = r"""
import random, sys, threading, time
from server.live.fetch import Fetcher
from server.live.sources import StreamReader
from server.live.urlguard import AllowList

url, rounds = sys.argv[1], int(sys.argv[2])
rng = random.Random(17)
chunks = 0
for n in range(rounds):
    reader = StreamReader(url, Fetcher(allow=AllowList.parse("127.0.0.1")))
    started = threading.Event()

    def pump() -> None:
        global chunks
        try:
            while reader.next_chunk() is not None:
                chunks += 1
                started.set()
        except Exception:
            pass  # a read refused after close(): what a stopped relay sees
        started.set()

    worker = threading.Thread(target=pump)
    worker.start()
    started.wait(10)
    time.sleep(rng.uniform(0.0, 0.03))
    reader.close()
    worker.join(10)
    assert not worker.is_alive(), f"round {n}: the decoder thread did not end after close()"
    assert reader.next_chunk() is None, "a closed reader gives no more audio"
print("chunks", chunks)
"""


@pytest.fixture
def fast_stream(tmp_path: Path) -> Iterator[str]:
    """An HTTP server sending 60 s of MP3 as fast as the client reads it."""
    mp3 = tmp_path / "long.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
         "-ac", "2", "-b:a", "128k", str(mp3)],
        check=True,
    )  # fmt: skip
    body = mp3.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.end_headers()
            try:
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i : i + 4096])
            except OSError:
                pass  # the reader closed the connection

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/long.mp3"
    server.shutdown()
    server.server_close()


def test_closing_a_reader_while_it_decodes_never_crashes(fast_stream: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, fast_stream, "40"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, (child.returncode, child.stderr[-3000:])
    assert int(child.stdout.split()[-1]) > 40  # the readers really decoded before each close
