"""Running ffprobe and chains of ffmpeg processes with timeouts and without pipe deadlocks."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import ffmpeg

from audio.errors import ProcessingFailed

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Global options for every ffmpeg we start: no stdin surprises, errors only.
QUIET = ("-hide_banner", "-nostdin", "-v", "error")
# Measuring filters (ebur128, loudnorm) print their summary at "info" level.
INFO = ("-hide_banner", "-nostdin", "-nostats", "-v", "info")
CHUNK = 1 << 16


def file_url(path: Path) -> str:
    """Name a local file so ffmpeg never reads it as a protocol, option or pattern."""
    return "file:" + str(Path(path).resolve())


def compile_args(stream_spec: Any, *global_args: str) -> list[str]:
    """Turn an ffmpeg-python graph into an argument list with our global options."""
    spec = stream_spec.global_args(*global_args) if global_args else stream_spec
    return [str(a) for a in ffmpeg.compile(spec, cmd=FFMPEG, overwrite_output=True)]


def timeout_for(duration_s: float | None) -> float:
    """A generous time budget for one pass over audio of this length (None: unknown)."""
    if duration_s is None or duration_s <= 0:
        return 3600.0
    # A pass runs at 100x real time or more on the 2-core dev box; /5 leaves room for a
    # slow or busy server without letting a stuck process hang a worker for ever.
    return 60.0 + duration_s / 5.0


def require_tool(name: str) -> None:
    """Raise a plain error when an external program the audio code needs is missing."""
    if shutil.which(name) is None:
        raise ProcessingFailed(f"The audio tool '{name}' is not installed on this machine.")


def ffprobe_json(path: Path, *, timeout_s: float = 60.0) -> dict[str, Any] | None:
    """ffprobe's format and streams as JSON, or None when ffprobe rejects the file."""
    # Same arguments as ffmpeg.probe(); run here because ffmpeg.probe() has no timeout.
    require_tool(FFPROBE)
    args = [FFPROBE, "-v", "error", "-show_format", "-show_streams", "-of", "json"]
    try:
        done = subprocess.run(
            [*args, file_url(path)],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessingFailed("Reading the file took too long.", detail=str(exc)) from exc
    if done.returncode != 0:
        return None
    try:
        parsed = json.loads(done.stdout.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Exit codes and stderr text of every process in a chain, in order."""

    returncodes: tuple[int, ...]
    stderrs: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every process exited with status 0."""
        return all(code == 0 for code in self.returncodes)

    @property
    def detail(self) -> str:
        """The tail of each failing process's stderr, for logs (never for operators)."""
        lines = []
        for i, (code, err) in enumerate(zip(self.returncodes, self.stderrs, strict=True)):
            if code != 0:
                lines.append(f"stage {i} exited {code}: {err[-800:].strip()}")
        return "\n".join(lines)


def run_chain(
    stages: Sequence[Sequence[str]],
    *,
    timeout_s: float,
    fan_out: Sequence[Sequence[str]] = (),
    tap_file: Path | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> ChainResult:
    """Run `stage0 | stage1 | ...` and copy the last stage's output to every consumer.

    Consumers: each `fan_out` process (stdin; they run in parallel, one core each),
    `tap_file`, and `sink` (called with each chunk). Results list `stages` then `fan_out`.
    Every process is killed on timeout (ProcessingFailed) or when the sink raises (the
    sink's exception propagates).
    """
    require_tool(FFMPEG)
    commands = [*stages, *fan_out]
    with contextlib.ExitStack() as files:
        err_files = [files.enter_context(tempfile.TemporaryFile()) for _ in commands]
        # Opened before any process starts, so a bad path is the caller's OSError, not ours.
        tap = files.enter_context(open(tap_file, "wb")) if tap_file is not None else None
        procs: list[subprocess.Popen[bytes]] = []
        try:
            _start_and_wait(stages, fan_out, procs, err_files, tap, sink, timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise ProcessingFailed(
                "Processing the audio took too long and was stopped.", detail=str(exc)
            ) from exc
        except FileNotFoundError as exc:
            raise ProcessingFailed("An audio tool is missing.", detail=str(exc)) from exc
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stderrs = []
        for err in err_files:
            err.seek(0)
            stderrs.append(err.read().decode("utf-8", "replace"))
    return ChainResult(tuple(p.returncode for p in procs), tuple(stderrs))


def _start_and_wait(
    stages: Sequence[Sequence[str]],
    fan_out: Sequence[Sequence[str]],
    procs: list[subprocess.Popen[bytes]],
    err_files: Sequence[IO[bytes]],
    tap: IO[bytes] | None,
    sink: Callable[[bytes], None] | None,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    consumed = bool(fan_out) or tap is not None or sink is not None
    previous_stdout: IO[bytes] | None = None
    for i, args in enumerate(stages):
        last = i == len(stages) - 1
        stdin = subprocess.DEVNULL if i == 0 else previous_stdout
        stdout = subprocess.PIPE if (not last or consumed) else subprocess.DEVNULL
        proc = subprocess.Popen(list(args), stdin=stdin, stdout=stdout, stderr=err_files[i])
        procs.append(proc)
        if previous_stdout is not None:
            previous_stdout.close()  # the child holds it now; EOF must reach it
        previous_stdout = proc.stdout
    branches: list[IO[bytes]] = []
    for j, args in enumerate(fan_out):
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err_files[len(stages) + j],
        )
        procs.append(proc)
        assert proc.stdin is not None
        branches.append(proc.stdin)
    pump = None
    if consumed:
        assert previous_stdout is not None
        pump = _Pump(previous_stdout, _Fan(tap, branches, sink))
    for proc in procs:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    if pump is not None:
        pump.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if pump.thread.is_alive():
            raise subprocess.TimeoutExpired(list(stages[-1]), timeout_s)
        if pump.error is not None:
            raise pump.error


class _Fan:
    """Copies chunks to a file, to several processes' stdin, and to a callback."""

    def __init__(
        self,
        tap: IO[bytes] | None,
        branches: list[IO[bytes]],
        sink: Callable[[bytes], None] | None,
    ) -> None:
        self._tap = tap
        self._branches = list(branches)
        self._sink = sink

    def write(self, chunk: bytes) -> None:
        if self._tap is not None:
            self._tap.write(chunk)
        for branch in list(self._branches):
            try:
                branch.write(chunk)
            except BrokenPipeError:
                # That consumer died; the others carry on and its exit code tells the story.
                self._branches.remove(branch)
        if self._sink is not None:
            self._sink(chunk)

    def close(self) -> None:
        for branch in self._branches:
            _close_quietly(branch)  # EOF: the consumer finishes and prints its summary


class _Pump:
    """Reads a process's stdout in a thread and hands each chunk on, keeping any error."""

    def __init__(self, source: IO[bytes], fan: _Fan) -> None:
        self.error: BaseException | None = None
        self._source = source
        self._fan = fan
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while chunk := self._source.read(CHUNK):
                self._fan.write(chunk)
        except BaseException as exc:  # handed to the waiting thread, which re-raises
            self.error = exc
        finally:
            self._source.close()  # a writer still running gets EPIPE and stops
            self._fan.close()


def _close_quietly(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        stream.close()


__all__ = [
    "FFMPEG",
    "FFPROBE",
    "INFO",
    "QUIET",
    "ChainResult",
    "compile_args",
    "ffprobe_json",
    "file_url",
    "require_tool",
    "run_chain",
    "timeout_for",
]
