"""The acoustic self-test on the device (issue 17): play the sweep, record it, judge, report.

`SelfTestRunner.run` borrows the idle output from the player (edge_agent.player
borrow_output: anything that must play takes it back at once), plays audio.selftest's
sweep at the asked volume while the profile's microphone records, analyses the recording
in a thread against the baseline kept in the local database, and puts a `selftest` device
event in the outbox. `DailySelfTest` runs it at the commune's local time each day, never
22:00-05:00, retrying every 10 minutes while the horns are busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from datetime import time as day_time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from audio.pcmformat import SAMPLE_RATE
from audio.sinks import AudioSink, SinkError
from edge_agent.capture import Capture, CaptureError, Tap
from edge_agent.commands import CommandRefused
from edge_agent.hardware import HardwareError
from edge_agent.localdb import LocalDb
from edge_agent.outbox import Outbox
from edge_agent.player import OutputBusy, OutputReclaimed, Player
from protocol import DeviceEvent
from schedules.tz import local_tz

if TYPE_CHECKING:  # numpy and the analysis load with the first self-test, not at the agent's start
    import numpy as np
    from numpy.typing import NDArray

    from audio.selftest import Figures, TestSignal

log = logging.getLogger(__name__)

BASELINE_KEY = "selftest_baseline"
DAILY_KEY = "selftest_daily"
DONE_KEY = "selftest_done_day"
SWEEP_S = 2.0
LEVEL_DBFS = -20.0  # the sweep's peak before the volume: headroom for a clipping amplifier
BLOCK = 4800  # 100 ms per write: a reclaim stops the sweep within about that
RETRY_S = 600.0  # busy or interrupted: the daily run tries again this much later
CATCH_UP_S = 3600.0  # an agent started within this after the daily time still runs it
QUIET_START, QUIET_END = day_time(22, 0), day_time(5, 0)  # never a sweep at night
MAX_NAP_S = 30.0  # the wall clock is read again this often (NTP may have moved it)
BUSY_VN = "loa đang phát chương trình hoặc phát trực tiếp"


class SelfTestRunner:
    """One self-test at a time on one agent."""

    def __init__(
        self,
        *,
        player: Player,
        db: LocalDb,
        outbox: Outbox,
        capture: Capture | None,
        tap: Tap,
        set_volume: Callable[[int], Awaitable[object]],
        desired_volume: Callable[[], int],
        server_time: Callable[[], float],
    ) -> None:
        self.player = player
        self.db = db
        self.outbox = outbox
        self.capture = capture
        self.tap = tap
        self._set_volume = set_volume
        self._desired_volume = desired_volume
        self._server_time = server_time
        self.running = False
        self.last_run_s: float | None = None  # wall time of the last measured run

    async def run(
        self, *, command_id: str | None, volume: int, rebaseline: bool = False, report: bool = True
    ) -> dict[str, Any]:
        """Test now and record the event (a busy one only when `report`); see the module doc."""
        # A command (command_id set) is refused with CommandRefused instead of a no_capture
        # or busy event: the operator sees why at once, and nothing was measured.
        refusal = self._refusal()
        if refusal is not None and command_id is not None:
            raise CommandRefused(f"{refusal[1]} (self-test not run: {refusal[0]})")
        if refusal is not None:
            code = "no_capture" if self.capture is None else "busy"
            event = self._event(code, f"Không chạy: {refusal[1]}", command_id)
            if report or code != "busy":
                await self._record(event)
            return event
        self.running = True
        started = asyncio.get_running_loop().time()
        try:
            event = await self._measure(command_id, volume, rebaseline)
        finally:
            self.running = False
            self.last_run_s = asyncio.get_running_loop().time() - started
        log.info("self-test: %s after %.2f s", event["code"], self.last_run_s)
        if event["code"] == "busy" and command_id is not None:
            raise CommandRefused(f"{BUSY_VN} (self-test not run: the horns are busy)")
        if report or event["code"] != "busy":
            await self._record(event)
        return event

    def _refusal(self) -> tuple[str, str] | None:
        if self.capture is None:
            return "the profile names no microphone", "thiết bị không có micro để tự kiểm tra"
        if self.running:
            return "a self-test is already running", "đang chạy một lần tự kiểm tra khác"
        if self.player.busy:
            return "a programme or live session is playing", BUSY_VN
        return None

    async def _measure(
        self, command_id: str | None, volume: int, rebaseline: bool
    ) -> dict[str, Any]:
        assert self.capture is not None
        from audio.selftest import analyse, test_signal

        signal = test_signal(sample_rate=SAMPLE_RATE, seconds=SWEEP_S, level_dbfs=LEVEL_DBFS)
        baseline = None if rebaseline else await self._baseline()
        try:
            async with self.player.borrow_output(seconds=signal.record_s + 1.0) as sink:
                try:
                    await self._set_volume(volume)
                    recorded = await self._play_and_record(sink, signal, volume)
                finally:
                    self.player.forget_volume()  # the next item sets its own volume again
                    await self._set_volume(self._desired_volume())
            result = await asyncio.to_thread(analyse, signal, recorded, baseline=baseline)
        except OutputBusy:
            return self._event("busy", f"Không chạy: {BUSY_VN}", command_id)
        except OutputReclaimed as exc:
            again = "sẽ thử lại sau" if command_id is None else "hãy chạy lại lệnh tự kiểm tra"
            why = f"Kết quả: bị ngắt vì loa phải phát nội dung khác ({exc}); {again}"
            return self._event("interrupted", why, command_id)
        except CaptureError as exc:
            log.error("self-test: %s", exc)
            return self._event("failed", f"Kết quả: lỗi micro. {exc.vietnamese}", command_id)
        except (HardwareError, SinkError, OSError, ValueError) as exc:
            log.error("self-test failed: %s", exc)
            return self._event("failed", f"Kết quả: lỗi khi đo ({exc})", command_id)
        code = result.verdict
        became = code == "baseline"
        if became and result.figures is not None:
            stored = json.dumps(result.figures.to_dict())
            await asyncio.to_thread(self.db.set_meta, BASELINE_KEY, stored)
        detail = f"Kết quả: {result.vietnamese}"
        if result.reasons:
            detail += f" ({result.reasons[0]})"
        event = self._event(code, detail, command_id)
        event.update(
            figures=None if result.figures is None else result.figures.to_dict(),
            level_vs_baseline_db=result.level_vs_baseline_db,
            baseline=became,
            reasons=[r[:300] for r in result.reasons[:10]],
        )
        log.info("self-test: %s %s (analysis %.0f ms)", code, result.reasons, result.analysis_ms)
        return event

    async def _play_and_record(
        self, sink: AudioSink, signal: TestSignal, volume: int
    ) -> NDArray[np.float32]:
        assert self.capture is not None
        from audio.pcm import clip_to_int16  # loaded by then (the signal is an array)

        gain = volume / 100 if self.player.software_volume else 1.0
        pcm = clip_to_int16(signal.samples.astype("float64") * (32767.0 * gain))
        await self.capture.start(signal.record_s)
        try:
            for at in range(0, len(pcm), BLOCK):
                block = pcm[at : at + BLOCK]
                await sink.write(block)
                self.tap.feed(block)
            await self.player.clock.sleep_until(sink.next_sample_monotonic())
            return await self.capture.finish()
        except BaseException:
            await self.capture.abort()
            raise

    async def _baseline(self) -> Figures | None:
        raw = await asyncio.to_thread(self.db.meta, BASELINE_KEY)
        if raw is None:
            return None
        from audio.selftest import Figures

        try:
            return Figures.from_dict(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            log.error("self-test: the stored baseline is unreadable (%s); measuring a new one", exc)
            return None

    def _event(self, code: str, detail: str, command_id: str | None) -> dict[str, Any]:
        return {
            "kind": "selftest",
            "at": self._server_time(),
            "code": code,
            "detail": detail[:500],
            "command_id": command_id,
            "figures": None,
            "level_vs_baseline_db": None,
            "baseline": False,
            "reasons": [],
        }

    async def _record(self, event: dict[str, Any]) -> None:
        try:
            DeviceEvent.model_validate({**event, "seq": 1})
        except ValidationError as exc:  # a figure out of the protocol's range: keep the verdict
            log.error("self-test: event out of range, sent without its figures: %s", exc)
            event.update(figures=None, level_vs_baseline_db=None)
        await self.outbox.record_device_event(event)


class DailySelfTest:
    """Runs the self-test at the desired state's local time each day (see the module doc)."""

    def __init__(self, *, runner: SelfTestRunner, db: LocalDb, wall: Callable[[], float]) -> None:
        self.runner = runner
        self.db = db
        self._wall = wall  # injected: tests move a fake clock and nudge()
        self.at: day_time | None = None
        self.volume = 30
        self.attempts = 0
        self._done: date | None = None  # the local day whose run is over (ran, or gave up)
        self._retry_at: float | None = None
        self._busy_day: date | None = None  # a busy event is sent once a day, not each retry
        self._refused: str | None = None  # a night-time setting already logged
        self._configured = False  # a desired state arrived: the saved setting is older
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Read the wall clock again now."""
        self._wake.set()

    async def configure(self, at: str | None, volume: int) -> None:
        """The desired state's "HH:MM" (local; None: no daily test) and volume; kept on disk."""
        saved = json.dumps({"at": at, "volume": volume})
        try:
            await asyncio.to_thread(self.db.set_meta, DAILY_KEY, saved)
        except Exception as exc:  # the database's own errors: the setting still applies now
            log.error("self-test: cannot keep the daily time in the local database: %s", exc)
        self._configured = True
        self._apply(at, volume)

    def _apply(self, at: str | None, volume: int) -> None:
        parsed = _hhmm(at)
        if parsed is not None and _quiet(parsed):
            if self._refused != at:
                log.warning(
                    "self-test: daily time %s refused: no test sound between 22:00 and 05:00; "
                    "no daily self-test until the commune sets another time",
                    at,
                )
            self._refused, parsed = at, None
        if parsed != self.at:
            self._retry_at = None
        self.at, self.volume = parsed, max(0, min(100, volume))
        self._wake.set()

    async def run(self) -> None:
        """Wait for each day's time and test; until cancelled."""
        await self._load()
        while True:
            self._wake.clear()
            now = self._wall()
            due = self._next(now)
            if due is not None and due <= now:
                await self._attempt(now)
                continue
            nap = MAX_NAP_S if due is None else max(0.01, min(MAX_NAP_S, due - now))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(nap):
                    await self._wake.wait()

    async def _load(self) -> None:
        try:
            saved, done = await asyncio.to_thread(self._read)
        except Exception as exc:
            log.error("self-test: cannot read the daily time from the local database: %s", exc)
            return
        if not self._configured and isinstance(saved, dict):
            at, volume = saved.get("at"), saved.get("volume")
            if (at is None or isinstance(at, str)) and isinstance(volume, int):
                self._apply(at, volume)
        with contextlib.suppress(TypeError, ValueError):
            self._done = date.fromisoformat(done) if done is not None else None

    def _read(self) -> tuple[object, Any]:
        raw = self.db.meta(DAILY_KEY)
        saved: object = None
        with contextlib.suppress(ValueError, RecursionError):
            saved = None if raw is None else json.loads(raw)
        return saved, self.db.meta(DONE_KEY)

    def _next(self, now: float) -> float | None:
        """When the next attempt is due (<= now: at once), None when there is no daily test."""
        if self.at is None:
            return None
        tz = local_tz()
        today = datetime.fromtimestamp(now, tz).date()
        start = datetime.combine(today, self.at, tzinfo=tz).timestamp()
        tomorrow = datetime.combine(today + timedelta(days=1), self.at, tzinfo=tz).timestamp()
        if self._done == today:
            return tomorrow
        if self._retry_at is not None:
            return self._retry_at
        if now < start:
            return start
        if now - start <= CATCH_UP_S:
            return now
        self._done = today  # the agent was off at the time: tomorrow, not a surprise now
        return tomorrow

    async def _attempt(self, now: float) -> None:
        tz = local_tz()
        local = datetime.fromtimestamp(now, tz)
        self._retry_at = None
        if _quiet(local.time()):
            log.info("self-test: not run at %s (22:00-05:00); next at tomorrow's time", local)
            await self._finish(local.date())
            return
        self.attempts += 1
        try:
            event = await self.runner.run(
                command_id=None, volume=self.volume, report=self._busy_day != local.date()
            )
        except Exception:  # a bug must not end the daily test for good
            log.exception("self-test: the daily run failed")
            await self._finish(local.date())
            return
        code = event["code"]
        if code == "busy":
            self._busy_day = local.date()
        retry = datetime.fromtimestamp(now + RETRY_S, tz)
        if code in ("busy", "interrupted"):
            if retry.date() == local.date() and not _quiet(retry.time()):
                log.info("self-test: %s; trying again at %s", code, retry.strftime("%H:%M"))
                self._retry_at = now + RETRY_S
                return
            log.info("self-test: %s and too late to try again today", code)
        await self._finish(local.date())

    async def _finish(self, day: date) -> None:
        self._done = day
        try:
            await asyncio.to_thread(self.db.set_meta, DONE_KEY, day.isoformat())
        except Exception as exc:
            log.error("self-test: cannot keep the day of the last run: %s", exc)


def _hhmm(value: str | None) -> day_time | None:
    if value is None:
        return None
    try:
        hours, minutes = value.split(":")
        return day_time(int(hours), int(minutes))
    except ValueError:
        log.warning("self-test: daily time %r is not HH:MM; no daily self-test", value[:20])
        return None


def _quiet(at: day_time) -> bool:
    """22:00-05:00 local: no test sound."""
    return at >= QUIET_START or at < QUIET_END
