"""Scheduled relays: at the planned time, relay the station to the programme's zones as frames.

Runs on the planner leader only (one process sends a session's frames). Every tick it expands
the planned programmes that have relays, with the planner's own specs, so each relay part's
session id is the one in the devices' schedule documents; a part whose frames are due soon and
that no one carries yet gets a task. The task opens the source as a live relay does (URL guard,
LOA_RELAY_ALLOWED_HOSTS, plus the source's host when an admin set allow_private), publishes
frames captured over [heard start - delay, heard end - delay], the last one flagged, and stops
sending while the source is silent or gone (dead air), so every device plays the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio.clock import Clock, SystemClock
from audio.pcm import Pcm
from protocol import live_topic
from schedules import ProgrammeSpec, to_local_wall
from server.db import session_scope
from server.live.buffer import PcmQueue
from server.live.publisher import FRAME_S, FramePublisher, LiveOutlet
from server.live.sources import SourceError, SourceStatus, check_url, feed_url
from server.live.urlguard import AllowList, Resolver, system_resolve, with_source_host
from server.programmes.items import RelayTiming
from server.relay import runs
from server.relay.deadair import Change, DeadAirDetector
from server.relay.models import RelayRun, RelaySource
from server.relay.planned import LOOKAHEAD_S, PlannedRelay, planned_relays, relay_programmes
from server.settings import ServerSettings

log = logging.getLogger(__name__)

TICK_S = 1.0
RECONNECT_MAX_S = 5.0  # a relay lasts minutes: retry a dropped station often
# A source opened late (a restart mid-relay) is not judged while its first connection is still
# being made, for this long: stream probing takes a second or two.
WARMUP_S = 3.0
PROGRESS_S = 5.0  # how often a running relay's counters are written
STOP_WAIT_S = 2.0

SpecSource = Callable[[Session], list[ProgrammeSpec]]


@dataclass
class SourceInfo:
    """What the task needs of the RelaySource row (read once, in a worker thread)."""

    id: int
    name: str
    url: str
    enabled: bool
    allow_private: bool


@dataclass
class _Relay:
    """One relay being carried out by this process."""

    plan: PlannedRelay
    name: str = ""
    task: asyncio.Task[None] | None = None
    publisher: FramePublisher | None = None
    writes: asyncio.Task[None] | None = None
    base_frames: int = 0  # counted by an earlier process (a restart mid-relay)
    base_dead_s: float = 0.0
    relayed: int = 0  # frames published with the source's audio in them
    dead_s: float = 0.0
    url: str = ""
    done: bool = False  # an earlier process finished it
    withdrawn: bool = False  # its programme no longer plays it
    handed_over: bool = False  # stopped for the next leader (or this process after a restart)


class RelayRunner:
    """Carries out scheduled relays while this process is the planner leader."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        outlet: LiveOutlet,
        settings: ServerSettings,
        is_leader: Callable[[], bool],
        programmes: SpecSource | None = None,
        relay_allow: AllowList | None = None,
        resolve: Resolver = system_resolve,
        server_time: Callable[[], float] = time.time,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        tick_s: float = TICK_S,
        lookahead_s: float = LOOKAHEAD_S,
    ) -> None:
        self.session_factory = session_factory
        self.outlet = outlet
        self.settings = settings
        self.is_leader = is_leader
        timing = RelayTiming.from_settings(settings)  # as the planner's (planner/runner.py)
        self.programmes = programmes or partial(relay_programmes, timing=timing)
        self.relay_allow = relay_allow or AllowList.parse(settings.relay_allowed_hosts)
        self.resolve = resolve
        self.server_time = server_time
        self.clock = clock or SystemClock()
        self.tick_s = tick_s
        self.lookahead_s = lookahead_s
        self.active: dict[str, _Relay] = {}
        self.dead_air_alarms: Counter | None = None
        if registry is not None:
            self.dead_air_alarms = Counter(
                "loa_relay_dead_air",
                "Dead-air alarms raised on scheduled relays, by relay source id",
                ["source"],
                registry=registry,
            )
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loop (on the app's event loop)."""
        self._closing = False
        self._loop_task = asyncio.create_task(self._loop(), name="relay-runner")

    async def stop(self) -> None:
        """Stop the loop; running relays send their last frame and stay open for a successor."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        await self._stop_all()

    async def _stop_all(self) -> None:
        relays = list(self.active.values())
        for relay in relays:
            relay.handed_over = True
            if relay.publisher is not None:
                relay.publisher.stop()
            elif relay.task is not None:
                relay.task.cancel()  # waiting to start, or a source-less relay: nothing to end
        tasks = [r.task for r in relays if r.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # never let one bad pass end the loop
                log.exception("scheduled relay pass failed")
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        """One pass: start a task for each relay due soon that nobody carries yet."""
        if not self.is_leader():
            if self.active:  # the new leader picks the relays up
                log.warning("no longer the planner: handing %d relays over", len(self.active))
                await self._stop_all()
            return
        now = datetime.fromtimestamp(self.server_time(), UTC)
        due = await asyncio.to_thread(self._due, now)
        self._withdraw(due, now=now.timestamp())
        for plan in due:
            if plan.session_id in self.active or self._closing:
                continue
            relay = _Relay(plan=plan)
            self.active[plan.session_id] = relay
            relay.task = asyncio.create_task(self._carry(relay), name=f"relay-{plan.session_id}")

    def _withdraw(self, due: list[PlannedRelay], *, now: float) -> None:
        """Stop relays whose programme no longer plays them (cancelled, edited)."""
        wanted = {p.session_id for p in due}
        for relay in list(self.active.values()):
            plan = relay.plan
            # Near its end a relay leaves the list anyway: its own last frame ends it.
            if plan.session_id in wanted or relay.withdrawn or plan.capture_end < now + 1.0:
                continue
            log.warning(
                "scheduled relay %s: programme %d no longer plays it (cancelled or edited); "
                "stopping it", plan.session_id, plan.programme_id,
            )  # fmt: skip
            relay.withdrawn = True
            if relay.publisher is not None:
                relay.publisher.stop()
            elif relay.task is not None:
                relay.task.cancel()

    def _due(self, now: datetime) -> list[PlannedRelay]:
        with session_scope(self.session_factory) as db:
            plans = planned_relays(self.programmes(db), now=now, lookahead_s=self.lookahead_s)
            if not plans:
                return []
            done = set(
                db.scalars(
                    select(RelayRun.session_id).where(
                        RelayRun.session_id.in_([p.session_id for p in plans]),
                        RelayRun.state.in_(runs.DONE),
                    )
                )
            )
        return [p for p in plans if p.session_id not in done]

    # -- one relay ----------------------------------------------------------------------------

    async def _carry(self, relay: _Relay) -> None:
        plan = relay.plan
        try:
            source = await asyncio.to_thread(self._prepare, relay)
            if relay.done:
                return
            await self._sleep_until(plan.open_at)
            if self._closing or relay.handed_over:
                return
            if source is None or not source.enabled:
                await self._without_source(relay, source)
            else:
                await self._relay(relay, source)
        except asyncio.CancelledError:
            if relay.withdrawn:
                self._write_finish(relay, failed=False)
            raise
        except Exception:  # one broken relay never touches the others
            log.exception("scheduled relay %s failed", plan.session_id)
            await self._finish(relay, failed=True)
        finally:
            if relay.writes is not None:
                await asyncio.gather(relay.writes, return_exceptions=True)
            self.active.pop(plan.session_id, None)

    def _prepare(self, relay: _Relay) -> SourceInfo | None:
        """Create (or find, after a restart) the run; the source as it is now."""
        plan = relay.plan
        with session_scope(self.session_factory) as db:
            run = runs.ensure_run(
                db,
                session_id=plan.session_id,
                programme_id=plan.programme_id,
                item_id=plan.item_id,
                relay_source_id=plan.part.source_id,
                org_unit_id=plan.org_unit_id,
                planned_start=plan.heard_start,
                planned_end=plan.heard_end,
            )
            if run.state in runs.DONE:
                relay.done = True
                return None
            if run.started_at is not None:
                log.info("picking up scheduled relay %s (a restart mid-relay)", plan.session_id)
            relay.base_frames, relay.base_dead_s = run.frames_sent, run.dead_air_s
            row = db.get(RelaySource, plan.part.source_id)
            relay.name = row.name if row is not None else plan.part.source_name
            if row is None:
                return None
            return SourceInfo(row.id, row.name, row.url, row.enabled, row.allow_private)

    async def _without_source(self, relay: _Relay, source: SourceInfo | None) -> None:
        """A removed or disabled source: alarm at once, send nothing, fail at the end."""
        plan = relay.plan
        why = "đã bị tắt" if source is not None else "không còn trong danh sách"
        text = f"Nguồn tiếp âm {relay.name} {why}; các cụm loa phát bản dự phòng."
        log.error(
            "scheduled relay %s (programme %d): relay source %d %r is %s; no frames are sent, "
            "devices play the fallback clip. Enable or fix the source under /relay-sources.",
            plan.session_id, plan.programme_id, plan.part.source_id, relay.name,
            "disabled" if source is not None else "missing",
        )  # fmt: skip
        now = self.server_time()
        self._count_alarm(plan)
        self._write(relay, runs.mark_running, session_id=plan.session_id, at=_dt(now))
        self._write(
            relay, runs.raise_alarm, session_id=plan.session_id, text=text,
            since=_dt(max(now, plan.capture_start)), at=_dt(now),
        )  # fmt: skip
        await self._sleep_until(plan.capture_end)
        relay.dead_s = max(0.0, plan.capture_end - max(now, plan.capture_start))
        if not relay.handed_over:
            await self._finish(relay, failed=True)

    def _allow_for(self, source: SourceInfo) -> AllowList:
        """LOA_RELAY_ALLOWED_HOSTS, plus the source's host when an admin allowed it on purpose."""
        return with_source_host(
            self.relay_allow, url=source.url, allow_private=source.allow_private
        )

    async def _relay(self, relay: _Relay, source: SourceInfo) -> None:
        plan = relay.plan
        relay.url = source.url
        queue = PcmQueue()  # as a live relay: the stream paces itself
        status = SourceStatus()
        feed: asyncio.Task[None] | None = None
        try:
            check_url(source.url)
            feed = asyncio.create_task(
                feed_url(
                    source.url, queue, status, allow=self._allow_for(source),
                    resolve=self.resolve, max_backoff_s=RECONNECT_MAX_S,
                ),
                name=f"relay-feed-{plan.session_id}",
            )  # fmt: skip
        except SourceError as exc:
            log.error("scheduled relay %s: source %r: %s", plan.session_id, source.name, exc)
        topics = sorted({live_topic(zone, plan.session_id) for zone in plan.zone_ids})
        detector = DeadAirDetector(
            dead_after_s=self.settings.relay_dead_air_s,
            silence_dbfs=self.settings.relay_silence_dbfs,
        )
        publisher = FramePublisher(
            outlet=self.outlet, queue=queue, clock=self.clock, server_time=self.server_time,
            topics=lambda: topics,
        )  # fmt: skip
        publisher.gate = self._gate(relay, publisher, detector, status)
        relay.publisher = publisher
        self._write(relay, runs.mark_running, session_id=plan.session_id, at=_now(self))
        progress = asyncio.create_task(self._progress(relay))
        log.info(
            "scheduled relay %s: %r to zones %s, frames captured %s to %s",
            plan.session_id, source.name, list(plan.zone_ids),
            _hms(plan.capture_start), _hms(plan.capture_end),
        )  # fmt: skip
        try:
            await publisher.run()
        finally:
            progress.cancel()
            if feed is not None:
                feed.cancel()
                await asyncio.gather(feed, return_exceptions=True)
        if relay.handed_over and self.server_time() < plan.capture_end - FRAME_S:
            self._write_progress(relay)  # still open: a successor picks it up
            return
        await self._finish(relay, failed=relay.base_frames == 0 and relay.relayed == 0)

    def _gate(
        self,
        relay: _Relay,
        publisher: FramePublisher,
        detector: DeadAirDetector,
        status: SourceStatus,
    ) -> Callable[[float, Pcm | None], bool]:
        plan = relay.plan
        opened: list[float] = []

        def warming_up(stamp: float) -> bool:
            if not opened:
                opened.append(stamp)
            first_try = status.reconnects == 0 and status.state != "playing"
            return first_try and stamp < opened[0] + WARMUP_S

        def gate(stamp: float, pcm: Pcm | None) -> bool:
            if stamp + FRAME_S <= plan.capture_start:
                warming_up(stamp)
                return False  # before the window: the stream is warming up
            if stamp >= plan.capture_end:
                publisher.stop()
                return False
            if stamp + 2 * FRAME_S >= plan.capture_end:
                publisher.stop()  # the next frame is the last one heard, flagged last
            if not warming_up(stamp):
                change = detector.feed(pcm, stamp)
                if change is not None:
                    self._changed(relay, change, status)
            if detector.dead:
                relay.dead_s += FRAME_S
                return False
            if pcm is not None:
                relay.relayed += 1
            return True

        return gate

    def _changed(self, relay: _Relay, change: Change, status: SourceStatus) -> None:
        plan = relay.plan
        if change.dead:
            how = "mất tín hiệu" if change.gone else "im lặng"
            text = f"Nguồn tiếp âm {relay.name} {how} từ {_hms(change.since)}"
            log.error(
                "scheduled relay %s (programme %d, zones %s): dead air on relay source %d %r "
                "(%s) since %s, source state %s, error %r; frames stopped, devices play the "
                "fallback clip. Check the station stream %s",
                plan.session_id, plan.programme_id, list(plan.zone_ids), plan.part.source_id,
                relay.name, "gone" if change.gone else "silent", _hms(change.since),
                status.state, status.error, relay.url[:200],
            )  # fmt: skip
            self._count_alarm(plan)
            self._write(
                relay, runs.raise_alarm, session_id=plan.session_id, text=text,
                since=_dt(change.since), at=_dt(change.at),
            )  # fmt: skip
        else:
            log.warning(
                "scheduled relay %s: relay source %d %r is back since %s; frames flow again",
                plan.session_id, plan.part.source_id, relay.name, _hms(change.since),
            )  # fmt: skip
            self._write(relay, runs.clear_alarm, session_id=plan.session_id, at=_dt(change.at))

    def _count_alarm(self, plan: PlannedRelay) -> None:
        if self.dead_air_alarms is not None:
            self.dead_air_alarms.labels(source=str(plan.part.source_id)).inc()

    async def _progress(self, relay: _Relay) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            self._write_progress(relay)

    def _write_progress(self, relay: _Relay) -> None:
        self._write(
            relay, runs.record_progress, session_id=relay.plan.session_id,
            frames_sent=self._frames(relay), dead_air_s=relay.base_dead_s + relay.dead_s,
            at=_now(self),
        )  # fmt: skip

    def _frames(self, relay: _Relay) -> int:
        sent = relay.publisher.frames_sent if relay.publisher is not None else 0
        return relay.base_frames + sent

    def _write_finish(self, relay: _Relay, *, failed: bool) -> None:
        self._write(
            relay, runs.finish, session_id=relay.plan.session_id, frames_sent=self._frames(relay),
            dead_air_s=relay.base_dead_s + relay.dead_s, failed=failed, at=_now(self),
        )  # fmt: skip

    async def _finish(self, relay: _Relay, *, failed: bool) -> None:
        plan = relay.plan
        self._write_finish(relay, failed=failed)
        if relay.writes is not None:
            await asyncio.gather(relay.writes, return_exceptions=True)
        log.info(
            "scheduled relay %s %s: %d frames, %.1f s of dead air",
            plan.session_id, "failed" if failed else "ended", self._frames(relay),
            relay.base_dead_s + relay.dead_s,
        )  # fmt: skip

    # -- helpers ------------------------------------------------------------------------------

    def _write(self, relay: _Relay, fn: Callable[..., Any], **kwargs: Any) -> None:
        """Run a runs.* change in a worker thread, after the relay's earlier ones."""
        before = relay.writes

        async def job() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            try:
                await asyncio.to_thread(self._in_db, fn, kwargs)
            except Exception:
                log.exception("scheduled relay %s: could not record %s", relay.plan.session_id, fn)

        relay.writes = asyncio.create_task(job())

    def _in_db(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        with session_scope(self.session_factory) as db:
            fn(db, **kwargs)

    async def _sleep_until(self, at: float) -> None:
        wait = at - self.server_time()
        if wait > 0:
            await asyncio.sleep(wait)


def _dt(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def _now(runner: RelayRunner) -> datetime:
    return _dt(runner.server_time())


def _hms(unix_s: float) -> str:
    """Vietnam wall time, as operators read it."""
    return f"{to_local_wall(_dt(unix_s)):%H:%M:%S}"
