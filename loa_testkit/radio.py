"""A station for relay tests: an HTTP MP3 stream in real time (ffmpeg -re) that can be killed."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 4096


class Radio:
    """Serves `source` looped forever at /live.mp3, paced like a real station."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.alive = True
        self.hits = 0
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The stream's address."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/live.mp3"

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def kill(self) -> None:
        """The station goes off the air: streams stop now, new requests get 503."""
        with self._lock:
            self.alive = False
            procs = list(self._procs)
        for proc in procs:
            proc.kill()

    def revive(self) -> None:
        """Back on the air."""
        self.alive = True

    def close(self) -> None:
        """Stop the server and every stream."""
        self.kill()
        self._server.shutdown()
        self._server.server_close()

    def _encoder(self) -> subprocess.Popen[bytes]:
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-i", str(self.source), "-ac", "1", "-ar", "48000", "-c:a", "libmp3lame",
            "-b:a", "96k", "-f", "mp3", "pipe:1",
        ]  # fmt: skip
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            if not self.alive:
                handler.send_error(503, "off the air")
                return
            self.hits += 1
            proc = self._encoder()
            self._procs.add(proc)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "audio/mpeg")
            handler.end_headers()
            assert proc.stdout is not None
            while self.alive:
                chunk = proc.stdout.read1(CHUNK)
                if not chunk:
                    break
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except OSError:
            pass  # the listener went away
        finally:
            proc.kill()
            proc.wait()
            with self._lock:
                self._procs.discard(proc)
            handler.close_connection = True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        radio = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/live.mp3":
                    self.send_error(404)
                    return
                radio._stream(self)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler


@contextmanager
def radio_station(source: Path) -> Iterator[Radio]:
    """A running Radio for the block."""
    radio = Radio(source)
    radio.start()
    try:
        yield radio
    finally:
        radio.close()
