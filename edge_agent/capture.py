"""The microphone on the pole, for the acoustic self-test (issue 17): arecord, or the sim's.

A capture records from just before the test signal plays (`start` returns once samples
flow) for the seconds asked, and hands back float32 mono at the output's 48 kHz. The sim's
microphone hears the samples the agent wrote to its sink (a `Tap` the self-test feeds as
it writes) through the acoustic path in `<data dir>/sim_acoustic.json`. `AlsaCapture.record`
is the one-call form the silence watcher uses for its short horn windows during programmes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from audio.pcmformat import SAMPLE_RATE
from firmware_profiles import FirmwareProfile

if TYPE_CHECKING:  # numpy and the sim's arithmetic load with the first recording or horn check
    import numpy as np
    from numpy.typing import NDArray

    from audio.acoustic import AcousticPath
    from audio.pcm import Pcm

log = logging.getLogger(__name__)

SIM_ACOUSTIC_FILE = "sim_acoustic.json"
MAX_ACOUSTIC_BYTES = 64 * 1024
FIRST_SAMPLES_S = 3.0  # arecord opens a USB device in well under a second
FINISH_GRACE_S = 5.0  # beyond the recording's length, before arecord is given up on


class CaptureError(Exception):
    """The microphone could not record; `vietnamese` says so for the event's detail."""

    def __init__(self, message: str, *, vietnamese: str) -> None:
        super().__init__(message)
        self.vietnamese = vietnamese


@dataclass(frozen=True)
class Recording:
    """A short recording and the time.monotonic() its first sample arrived at."""

    started: float
    samples: NDArray[np.float32]  # mono at SAMPLE_RATE, full scale 1.0


class Capture(Protocol):
    """A microphone: start() just before playback, finish() for the recording."""

    async def start(self, seconds: float) -> None:
        """Begin recording `seconds`; return once samples flow."""
        ...

    async def finish(self) -> NDArray[np.float32]:
        """The recording: float32 mono at SAMPLE_RATE, full scale 1.0, `seconds` long."""
        ...

    async def abort(self) -> None:
        """Stop a recording that is no longer wanted."""
        ...


class Tap:
    """What the self-test wrote to the sink, sample for sample (the sim microphone's source)."""

    def __init__(self) -> None:
        self._blocks: list[Pcm] = []

    def clear(self) -> None:
        """Forget what was played before."""
        self._blocks = []

    def feed(self, pcm: Pcm) -> None:
        """Samples the sink accepted."""
        self._blocks.append(pcm.copy())

    def played(self) -> NDArray[np.float32]:
        """Everything fed since clear(), as float32 full scale 1.0."""
        import numpy as np  # loads with the first self-test, not at idle

        if not self._blocks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(self._blocks).astype(np.float32) / 32768.0).astype(np.float32)


class SimCapture:
    """The simulated cluster's microphone: the tapped output through an AcousticPath."""

    def __init__(self, *, data_dir: Path, tap: Tap) -> None:
        self.path_file = data_dir / SIM_ACOUSTIC_FILE
        self.tap = tap
        self._path: AcousticPath | None = None
        self._samples = 0

    async def start(self, seconds: float) -> None:
        """Read the acoustic path (a bad file is a CaptureError) and listen from now."""
        self._path = await asyncio.to_thread(load_acoustic_path, self.path_file)
        self._samples = round(seconds * SAMPLE_RATE)
        self.tap.clear()

    async def finish(self) -> NDArray[np.float32]:
        """What the microphone heard of the tapped samples, `seconds` long."""
        path = self._path
        if path is None:
            raise CaptureError(
                "the sim microphone was not started", vietnamese="Micro mô phỏng chưa được bật"
            )
        import numpy as np  # with the sim's arithmetic: loads with the first recording

        from audio.acoustic import hear

        played = self.tap.played()[: self._samples]
        self.tap.clear()  # the blocks are copied into `played`: keep no second copy
        padded = np.concatenate([played, np.zeros(self._samples - len(played), np.float32)])
        del played
        heard = await asyncio.to_thread(hear, path, padded, SAMPLE_RATE)
        return heard[: self._samples]

    async def abort(self) -> None:
        """Nothing runs in the background."""
        self._path = None


def load_acoustic_path(path_file: Path) -> AcousticPath:
    """The sim's acoustic path: the file's, or a healthy default when there is none."""
    from audio.acoustic import AcousticPath

    try:
        with path_file.open("rb") as f:
            raw = f.read(MAX_ACOUSTIC_BYTES + 1)
    except FileNotFoundError:
        return AcousticPath()
    except OSError as exc:
        raise CaptureError(
            f"cannot read {path_file}: {exc.strerror or exc}",
            vietnamese=f"Không đọc được tệp đường truyền âm mô phỏng {path_file.name}",
        ) from exc
    try:
        if len(raw) > MAX_ACOUSTIC_BYTES:
            raise ValueError(f"larger than {MAX_ACOUSTIC_BYTES} bytes")
        return AcousticPath.from_dict(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError included
        raise CaptureError(
            f"{path_file} is not a valid acoustic path: {exc}",
            vietnamese=f"Tệp đường truyền âm mô phỏng {path_file.name} không hợp lệ: {exc}",
        ) from exc


class AlsaCapture:
    """A USB or I2S microphone read with arecord (alsa-utils), s16le mono, in the background."""

    def __init__(self, *, device: str, sample_rate: int) -> None:
        self.device = device
        self.sample_rate = sample_rate
        self._proc: asyncio.subprocess.Process | None = None
        self._first = b""
        self._seconds = 0.0

    async def start(self, seconds: float) -> None:
        """Start arecord for `seconds` and return once its first samples arrived."""
        exe = shutil.which("arecord")
        if exe is None:
            raise CaptureError(
                "arecord is not installed (apt install alsa-utils)",
                vietnamese="Thiết bị thiếu chương trình ghi âm arecord (gói alsa-utils)",
            )
        self._seconds = seconds
        argv = [exe, "-q", "-D", self.device, "-t", "raw", "-f", "S16_LE", "-c", "1"]
        argv += ["-r", str(self.sample_rate), "-s", str(round(seconds * self.sample_rate))]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(FIRST_SAMPLES_S):
                self._first = await self._proc.stdout.read(2)
        except TimeoutError:
            await self.abort()
            raise self._error(f"no samples within {FIRST_SAMPLES_S:g} s") from None
        if not self._first:
            raise self._error(await self._failure())

    async def record(self, seconds: float) -> Recording:
        """Record `seconds` in one call (a CaptureError when the device fails); arecord ends."""
        try:
            await self.start(seconds)
            started = time.monotonic()
            return Recording(started, await self.finish())
        finally:
            await self.abort()  # nothing left running, whatever happened

    async def finish(self) -> NDArray[np.float32]:
        """The rest of the recording, as float32 at SAMPLE_RATE."""
        import numpy as np  # loads with the first recording, not at idle

        proc = self._proc
        if proc is None or proc.stdout is None:
            raise self._error("the microphone was not started")
        try:
            async with asyncio.timeout(self._seconds + FINISH_GRACE_S):
                data = self._first + await proc.stdout.read()
                code = await proc.wait()
        except TimeoutError:
            await self.abort()
            raise self._error("arecord did not finish") from None
        self._proc = None
        if code != 0:
            raise self._error(await self._failure(proc))
        data = data[: len(data) // 2 * 2]
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        if self.sample_rate != SAMPLE_RATE and len(samples):
            # Linear: the analysis reads octave bands up to 8 kHz, far below either Nyquist.
            t = np.arange(round(len(samples) * SAMPLE_RATE / self.sample_rate)) / SAMPLE_RATE
            samples = np.interp(t, np.arange(len(samples)) / self.sample_rate, samples)
        return samples.astype(np.float32)

    async def abort(self) -> None:
        """Kill arecord if it still runs."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _failure(self, proc: asyncio.subprocess.Process | None = None) -> str:
        proc = proc or self._proc
        if proc is None or proc.stderr is None:
            return "arecord stopped"
        err = (await proc.stderr.read()).decode(errors="replace").strip()
        code = await proc.wait()
        self._proc = None
        return f"arecord exited with {code}: {err[-300:] or 'no message'}"

    def _error(self, why: str) -> CaptureError:
        return CaptureError(
            f"microphone {self.device}: {why}",
            vietnamese=f"Không ghi âm được từ micro {self.device}: {why}",
        )


def make_capture(*, profile: FirmwareProfile, data_dir: Path, tap: Tap) -> Capture | None:
    """The profile's microphone, or None when it names none."""
    config = profile.capture
    if config is None:
        return None
    if config.kind == "sim":
        return SimCapture(data_dir=data_dir, tap=tap)
    if config.alsa_device is None:
        log.error("profile %s: capture.kind alsa needs capture.alsa_device", profile.name)
        return None
    return AlsaCapture(device=config.alsa_device, sample_rate=config.sample_rate)
