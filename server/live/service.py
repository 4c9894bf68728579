"""Live sessions in this server process: start, target, publish, track device answers, stop.

Sessions run in the memory of the process that started them (a restart ends them; the
devices stop on their own when frames stop); each is also written to the live-session
registry table so that every other server process lists it and can ask for its stop.
Proof that devices played arrives as PlayEvents of kind "live" through the normal events
ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio.clock import Clock, SystemClock
from audio.pcmformat import SAMPLE_RATE
from protocol import Ack, LiveJoin, LiveLeave, live_topic
from server.access import policy
from server.access import reach as access_reach
from server.access.actor import Actor, load_actor
from server.audit import service as audit
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.db import session_scope
from server.devices.models import Device
from server.domain import DomainError
from server.live import registry
from server.live.buffer import PcmQueue
from server.live.delay import DelayChoice, choose_playout_delay
from server.live.publisher import FramePublisher, LiveOutlet, command_out, frames_per_send
from server.live.schemas import RELAY, DeviceHealth, LiveSessionOut, LiveStart
from server.live.sources import (
    PushDecoder,
    SourceError,
    SourceStatus,
    check_url,
    feed_file,
    feed_url,
    probe_url,
)
from server.live.targets import Target, resolve_targets
from server.live.urlguard import AllowList, Resolver, system_resolve, with_source_host
from server.orgs.tree import ancestor_ids
from server.relay.models import RelaySource
from server.settings import ServerSettings
from server.users import accounts as users

log = logging.getLogger(__name__)

COMMAND_TTL_S = 10.0
REJOIN_EVERY_S = 5.0  # re-send the join to devices that have not answered (were offline)
URL_PROBE_S = 3.0
# A clip played as live waits this long at most for every device to answer its join, so
# devices joining late (4G, a busy board) still hear its first words. A device answers once
# it can decode: its first session loads the codec, about 0.2 s on the bench machine with
# nothing else to do and over a second when ten start together (a Pi is slower still).
JOIN_WAIT_S = 2.0
# A microphone's frames start with its first audio, if it comes within this long (else
# silence goes out meanwhile, as for a microphone that pauses): see FramePublisher.
FIRST_AUDIO_WAIT_S = 2.0
ENDED_KEPT = 50  # ended sessions still listed
# How often running sessions' rows are rewritten and the owner looks for stop requests from
# other processes (one thread hop for both: a stop asked elsewhere takes effect within ~1 s).
SYNC_S = 1.0
REMOTE_STOP_WAIT_S = 5.0  # a DELETE through another process waits this long for the end
AFTER_END_S = 10.0  # ended rows are still refreshed this long: the devices' leave answers
MIC_PREFILL_S = 0.1
UNREGISTERED = (
    "Chỉ được tiếp âm từ nguồn đã đăng ký / only registered relay sources: choose an enabled "
    "relay source of the targeted units or a unit above them (GET /api/v1/relay-sources)."
)


def _check_may_stop(org_unit_ids: frozenset[int], reach: frozenset[int] | None) -> None:
    """Stopping a session needs every one of its zones in the user's subtree."""
    if reach is not None and not org_unit_ids <= reach:
        raise LiveError(
            "This session also reaches zones outside your org unit; "
            "a user of the org unit above must stop it.",
            status=403,
        )


def _queue_for(request: LiveStart, delay_ms: int, frame_s: float) -> PcmQueue:
    """A file or relay queue paces its source; a microphone's is live (see PcmQueue)."""
    if request.source != "mic":
        return PcmQueue()
    # A sender's messages (the console's 40 ms, `loa-server live`'s 20 ms, up to 100 ms)
    # arrive with network jitter: keep one message and one frame in hand (a take must find a
    # whole frame between two messages), at most 100 ms. It is part of the playout delay (the
    # frames' stamps include it), beside the network and the devices' output buffers, so it
    # takes at most a third of it.
    prefill_s = min(MIC_PREFILL_S, delay_ms / 1000 / 3)
    return PcmQueue(prefill_s=prefill_s, live=True, chunk_margin_s=frame_s)


def relay_source_for(db: Session, request: LiveStart, targets: list[Target]) -> RelaySource:
    """The registered source a relay request names (by id, or by its exact URL), else 422.

    Usable: enabled, and owned by the org unit of every targeted zone or a unit above it (the
    rule programmes follow). Missing, disabled and foreign sources get the same answer.
    """
    units = {t.org_unit_id for t in targets}
    owners = set.intersection(*(set(ancestor_ids(db, org_unit_id=u)) for u in units))
    query = select(RelaySource).where(
        RelaySource.enabled.is_(True), RelaySource.org_unit_id.in_(owners)
    )
    if request.relay_source_id is not None:
        query = query.where(RelaySource.id == request.relay_source_id)
    if request.url:
        query = query.where(RelaySource.url == request.url.strip())
    source = db.scalars(query.order_by(RelaySource.id).limit(1)).first()
    if source is None:
        named = request.relay_source_id
        raise LiveError(UNREGISTERED if named is None else f"Relay source {named}: {UNREGISTERED}")
    return source


def _delay_for(db: Session, request: LiveStart, targets: list[Target]) -> DelayChoice:
    """The requested delay, or for "auto" the one the targets' reported links call for."""
    if request.playout_delay_ms != "auto":
        return DelayChoice(request.playout_delay_ms, "requested")
    uids = [t.uid for t in targets]
    rows = db.execute(select(Device.uid, Device.telemetry).where(Device.uid.in_(uids))).all()
    reports = [(uid, _ms(telemetry, "link_rtt_p95_ms")) for uid, telemetry in rows]
    longest = [(uid, _ms(telemetry, "link_rtt_max_ms")) for uid, telemetry in rows]
    choice = choose_playout_delay(reports, longest)
    log.info("live playout delay chosen: %s", choice.basis)
    return choice


def _ms(telemetry: dict[str, Any] | None, key: str) -> float | None:
    value = (telemetry or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


class LiveError(DomainError):
    """A live request that cannot be carried out; `status` is the HTTP code to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(status, message)


AckListener = Callable[[str, Ack], None]  # (device uid, its Ack), called on a worker thread


class LiveBridge(Protocol):
    """What live audio needs of the MQTT bridge: the link it publishes on, the device acks."""

    @property
    def link(self) -> LiveOutlet:
        """The bridge's MQTT link."""
        ...

    def add_ack_listener(self, callback: AckListener) -> None:
        """Hear every Ack a device sends."""
        ...


def _audit(
    db: Session, actor: Actor, action: str, out: LiveSessionOut, details: dict[str, Any]
) -> None:
    audit.record(
        db, actor=actor, action=action, object_type="live", object_id=out.id,
        summary=f"{out.priority} live ({out.source}) to {out.targeted} devices",
        details=details,
    )  # fmt: skip


@dataclass
class DeviceState:
    """What one targeted device said."""

    target: Target
    join_id: str
    status: str = "pending"
    detail: str = ""
    joined_at: float | None = None


@dataclass
class LiveSession:
    """One running (or recently ended) session."""

    id: str
    request: LiveStart
    user_id: int | None
    started_at: float
    queue: PcmQueue
    publisher: FramePublisher
    source_status: SourceStatus
    devices: dict[str, DeviceState]
    topics: list[str]
    delay_ms: int  # the playout delay the devices are told (chosen by the server for "auto")
    delay_basis: str | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    decoder: PushDecoder | None = None  # mic sessions: set by the ingest WebSocket
    ingest_connected: bool = False
    last_rejoin: float = 0.0
    last_input: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def org_unit_ids(self) -> frozenset[int]:
        """The org units of the targeted zones."""
        return frozenset(d.target.org_unit_id for d in self.devices.values())

    def visible_to(self, reach: frozenset[int] | None) -> bool:
        """A user sees a session that reaches into their subtree (None: the whole system)."""
        return reach is None or bool(self.org_unit_ids & reach)

    def entry(self) -> registry.Entry:
        """The session as the registry table stores it."""
        return registry.Entry(id=self.id, org_unit_ids=self.org_unit_ids, view=self.view())

    def view(self) -> LiveSessionOut:
        """The listing shape."""
        return LiveSessionOut(
            id=self.id,
            label=self.request.label,
            source=self.request.source,
            priority=self.request.priority,
            state="ended" if self.ended_at is not None else "running",
            end_reason=self.end_reason,
            started_at=self.started_at,
            ended_at=self.ended_at,
            playout_delay_ms=self.delay_ms,
            playout_delay_basis=self.delay_basis,
            zone_topics=self.topics,
            listeners=sum(d.status == "joined" for d in self.devices.values()),
            targeted=len(self.devices),
            frames_sent=self.publisher.frames_sent,
            silent_frames=self.publisher.silent_frames,
            frame_ms=round(self.publisher.frame_s * 1000),
            source_status=self.source_status.as_dict(self.queue),
            cpu_s=round(self.publisher.cpu_s, 4),
            devices=[
                DeviceHealth(
                    uid=d.target.uid,
                    zone_id=d.target.zone_id,
                    status=d.status,
                    detail=d.detail,
                    joined_at=d.joined_at,
                )
                for d in self.devices.values()
            ],
            ingest_url=f"/api/v1/live/{self.id}/ingest" if self.request.source == "mic" else None,
        )


class LiveService:
    """All live sessions of this process (create one per app, on the app's event loop)."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        outlet: LiveOutlet,
        clip_path: Callable[[str], Path],
        clock: Clock | None = None,
        server_time: Callable[[], float] = time.time,
        relay_allow: AllowList | None = None,
        resolve: Resolver = system_resolve,
        frame_ms: Literal[20, 40] = 20,
        send_ms: int = 40,
    ) -> None:
        self.session_factory = session_factory
        self.frame_ms = frame_ms  # LOA_LIVE_FRAME_MS
        self.frames_per_send = frames_per_send(
            send_ms=send_ms, frame_ms=frame_ms
        )  # LOA_LIVE_SEND_MS
        self.relay_allow = relay_allow or AllowList()  # LOA_RELAY_ALLOWED_HOSTS
        self.resolve = resolve
        self.outlet = outlet
        self.clip_path = clip_path
        self.clock = clock or SystemClock()
        self.server_time = server_time
        self.sessions: dict[str, LiveSession] = {}
        self._commands: dict[str, tuple[str, str]] = {}  # command id -> (session, device)
        self._loop = asyncio.get_running_loop()
        self.owner = uuid.uuid4().hex  # this service's name in the registry table
        self._sync: asyncio.Task[None] | None = None
        self._stops: set[asyncio.Task[LiveSession]] = set()  # stops asked by other processes
        self._writing = asyncio.Lock()  # one registry write at a time: the newest view wins

    # -- use cases (the request session commits the audit entry) ------------------------------

    async def start(self, db: Session, *, actor: Actor, request: LiveStart) -> LiveSession:
        """Start a session to zones (or an org unit's subtree) now, and audit it."""
        if request.priority == "emergency" and not actor.may_run_emergency():
            raise DomainError(403, "You may not start an emergency broadcast.")
        session = await self._start(db, request=request, actor=actor)
        # The session's request: a relay's names the registered source it resolved to.
        details = session.request.model_dump(exclude_none=True)
        await asyncio.to_thread(_audit, db, actor, "live.start", session.view(), details)
        return session

    async def stop(self, db: Session, *, actor: Actor, session_id: str) -> LiveSessionOut:
        """Stop a session of any server process (the devices are told to leave), and audit it."""
        out = await self._stop_anywhere(
            session_id, reason=f"stopped by {actor.user.username}", reach=actor.org_ids
        )
        details = {"end_reason": out.end_reason}
        await asyncio.to_thread(_audit, db, actor, "live.stop", out, details)
        return out

    async def list_sessions(self, *, actor: Actor) -> list[LiveSessionOut]:
        """Running sessions first, then recently ended ones, that reach the caller's subtree."""
        return await self._list(reach=actor.org_ids)

    async def broadcaster(self, *, token: str, ip: str) -> Actor | None:
        """The user a microphone's token signs in, if their role may broadcast; else None."""

        def check() -> Actor | None:
            with session_scope(self.session_factory) as db:
                user = users.user_for_token(db, token=token)
                if user is None or not policy.may(user.role, policy.LIVE_BROADCAST):
                    return None
                return load_actor(db, user=user, ip=ip, via_cookie=False)

        return await asyncio.to_thread(check)

    # -- start / stop -----------------------------------------------------------------------

    async def _start(self, db: Session, *, request: LiveStart, actor: Actor) -> LiveSession:
        """Resolve targets, check the source, start publishing and send the joins."""
        targets, clip_file, relay = await asyncio.to_thread(self._lookup, db, request, actor)
        allow = self.relay_allow
        if relay is not None:
            allow = self._allow_for(relay)
            update = {"url": relay.url, "relay_source_id": relay.id}
            request = request.model_copy(update=update | {"label": request.label or relay.name})
            await self._probe(relay.url, allow)
        delay = await asyncio.to_thread(_delay_for, db, request, targets)
        sid = uuid.uuid4().hex[:12]
        queue = _queue_for(request, delay.delay_ms, self.frame_ms / 1000)
        topics = sorted({live_topic(t.zone_id, sid) for t in targets})
        session = LiveSession(
            id=sid,
            request=request,
            user_id=actor.user.id,
            started_at=self.server_time(),
            queue=queue,
            publisher=FramePublisher(
                outlet=self.outlet,
                queue=queue,
                clock=self.clock,
                server_time=self.server_time,
                topics=lambda: topics,
                frame_samples=SAMPLE_RATE * self.frame_ms // 1000,
                first_audio_wait_s=FIRST_AUDIO_WAIT_S,
                frames_per_send=self.frames_per_send,
            ),
            source_status=SourceStatus(),
            devices={t.uid: DeviceState(target=t, join_id=self._new_id()) for t in targets},
            topics=topics,
            delay_ms=delay.delay_ms,
            delay_basis=None if request.playout_delay_ms != "auto" else delay.basis,
        )
        self.sessions[sid] = session
        if clip_file is not None:
            session.tasks.append(
                asyncio.create_task(feed_file(clip_file, queue, session.source_status))
            )
        elif relay is not None:
            session.tasks.append(
                asyncio.create_task(
                    feed_url(
                        relay.url,
                        queue,
                        session.source_status,
                        allow=allow,
                        resolve=self.resolve,
                    )
                )
            )
        else:
            session.source_status.state = "waiting for the microphone"
        session.tasks.append(asyncio.create_task(self._run(session), name=f"live-{sid}"))
        for state in session.devices.values():
            self._send_join(session, state)
        log.info("live %s started: %s to %d devices", sid, request.source, len(targets))
        await self._save([session])
        if self._sync is None or self._sync.done():
            self._sync = asyncio.create_task(self._sync_loop(), name="live-registry")
        return session

    def _lookup(
        self, db: Session, request: LiveStart, actor: Actor
    ) -> tuple[list[Target], Path | None, RelaySource | None]:
        """Targets, clip file, relay source; ids out of reach are refused like missing ones."""
        targets = resolve_targets(
            db, zone_ids=request.zone_ids, org_unit_id=request.org_unit_id, actor=actor
        )
        clip = (
            access_reach.load(db, actor, Clip, request.clip_id)
            if request.source == "file" and request.clip_id is not None
            else None
        )
        if not targets:
            raise LiveError("No device is in the chosen zones: there is nobody to broadcast to.")
        if request.source in RELAY:
            return targets, None, relay_source_for(db, request, targets)
        if clip is None:
            return targets, None, None
        path = self.clip_path(clip.sha256)
        if not path.is_file():
            raise LiveError(
                "The clip's audio file is missing from the server's storage.", status=409
            )
        return targets, path, None

    def _allow_for(self, source: RelaySource) -> AllowList:
        """LOA_RELAY_ALLOWED_HOSTS, plus the source's host when an admin allowed it on purpose."""
        return with_source_host(
            self.relay_allow, url=source.url, allow_private=source.allow_private
        )

    async def _probe(self, url: str, allow: AllowList) -> None:
        try:
            check_url(url)
            await asyncio.wait_for(
                asyncio.to_thread(
                    probe_url,
                    url,
                    allow=allow,
                    timeout_s=URL_PROBE_S,
                    resolve=self.resolve,
                ),
                URL_PROBE_S + 2,
            )
        except SourceError as exc:
            raise LiveError(str(exc)) from None
        except TimeoutError:
            log.warning(
                "live relay %s did not answer within %s s; starting anyway", url[:200], URL_PROBE_S
            )

    def get(self, session_id: str, *, reach: frozenset[int] | None) -> LiveSession:
        """A session the user may see, else LiveError 404 (existence never leaks)."""
        session = self.sessions.get(session_id)
        if session is None or not session.visible_to(reach):
            raise LiveError(f"No live session {session_id!r}.", status=404)
        return session

    async def _stop(
        self, session_id: str, *, reason: str, reach: frozenset[int] | None = None
    ) -> LiveSession:
        """End a session: flag the last frame, tell the devices to leave."""
        session = self.get(session_id, reach=reach)
        _check_may_stop(session.org_unit_ids, reach)
        if session.ended_at is None and session.end_reason is None:
            session.end_reason = reason
            session.publisher.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.done.wait(), 2.0)
        return session

    async def _stop_anywhere(
        self, session_id: str, *, reason: str, reach: frozenset[int] | None
    ) -> LiveSessionOut:
        """Stop a session of this process, or ask its owner through the registry and wait."""
        if session_id in self.sessions:
            return (await self._stop(session_id, reason=reason, reach=reach)).view()
        found = await asyncio.to_thread(self._load, session_id)
        if found is None or found.owner == self.owner or not found.visible_to(reach):
            raise LiveError(f"No live session {session_id!r}.", status=404)
        _check_may_stop(found.org_unit_ids, reach)
        if found.view.state == "ended":
            return found.view
        await asyncio.to_thread(
            registry.request_stop, self.session_factory, session_id=session_id, reason=reason
        )
        deadline = time.monotonic() + REMOTE_STOP_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            found = await asyncio.to_thread(self._load, session_id) or found
            if found.view.state == "ended":
                break
        return found.view

    def _load(self, session_id: str) -> registry.Remote | None:
        return registry.load(self.session_factory, session_id=session_id, now=self.server_time())

    async def finish_input(self, session: LiveSession, *, reason: str) -> None:
        """The source said it ended: publish what is queued (≤ 2 s), then end the session."""
        if session.end_reason is None:
            session.end_reason = reason
        session.queue.finish()
        wait_s = session.queue.size / 48000 + 2.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), wait_s)

    async def close(self) -> None:
        """Stop every session and write their ends (the server is shutting down)."""
        for sid, s in list(self.sessions.items()):
            if s.ended_at is None:
                await self._stop(sid, reason="the server stopped")
        runs = [
            t for s in self.sessions.values() for t in s.tasks if t.get_name() == f"live-{s.id}"
        ]
        if runs:
            await asyncio.wait(runs, timeout=5.0)  # each writes its ended row on the way out
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync

    async def _list(self, *, reach: frozenset[int] | None) -> list[LiveSessionOut]:
        """Running sessions first, then recently ended ones: this process's and the others'."""
        views = [s.view() for s in self.sessions.values() if s.visible_to(reach)]
        remote = await asyncio.to_thread(
            registry.others, self.session_factory, owner=self.owner, now=self.server_time()
        )
        shown = {v.id for v in views}
        theirs = [r.view for r in remote if r.visible_to(reach) and r.id not in shown]
        running = [v for v in theirs if v.state == "running"]
        ended = sorted((v for v in theirs if v.state == "ended"), key=lambda v: -(v.ended_at or 0))
        views += running + ended[: registry.LISTED_ENDED]
        return sorted(views, key=lambda v: (v.state == "ended", -v.started_at))

    # -- the session's life -----------------------------------------------------------------

    async def _run(self, session: LiveSession) -> None:
        req = session.request
        await self._preroll(session)
        frames = asyncio.create_task(session.publisher.run())
        try:
            while not frames.done():
                await asyncio.wait({frames}, timeout=0.25)
                elapsed = self.server_time() - session.started_at
                if (
                    req.duration_s is not None
                    and elapsed >= req.duration_s
                    and session.end_reason is None
                ):
                    session.end_reason = f"the duration limit of {req.duration_s:g} s was reached"
                    session.publisher.stop()
                if req.source == "mic" and session.end_reason is None:
                    idle = time.monotonic() - session.last_input
                    if idle > req.idle_timeout_s:
                        session.end_reason = (
                            f"the microphone sent no audio for {req.idle_timeout_s:g} s"
                        )
                        session.publisher.stop()
                self._rejoin(session)
            await frames
        except Exception as exc:  # one broken session must not touch the others
            log.exception("live %s failed", session.id)
            session.end_reason = session.end_reason or f"failed: {exc}"
        finally:
            frames.cancel()
            self._end(session)
            await self._save([session])

    async def _preroll(self, session: LiveSession) -> None:
        """Hold a clip (≤ JOIN_WAIT_S) until every device has answered its join."""
        if session.request.source != "file":
            return  # a speaker or a relayed station must not gain latency
        deadline = time.monotonic() + JOIN_WAIT_S
        while time.monotonic() < deadline and session.end_reason is None:
            if all(d.status != "pending" for d in session.devices.values()):
                return
            await asyncio.sleep(0.02)

    def _end(self, session: LiveSession) -> None:
        if session.end_reason is None:
            session.end_reason = (
                "the clip finished" if session.request.source == "file" else "the source ended"
            )
        session.ended_at = self.server_time()
        for task in session.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for state in session.devices.values():
            if state.status in ("pending", "joined"):
                leave = LiveLeave(
                    id=self._new_id(),
                    session_id=session.id,
                    reason=session.end_reason,
                    expires_at=self.server_time() + COMMAND_TTL_S,
                )
                self._commands[leave.id] = (session.id, state.target.uid)
                self.outlet.publish(command_out(state.target.uid, leave))
        session.done.set()
        log.info("live %s ended: %s", session.id, session.end_reason)
        ended = [s for s in self.sessions.values() if s.ended_at is not None]
        for old in sorted(ended, key=lambda s: s.ended_at or 0)[:-ENDED_KEPT]:
            self.sessions.pop(old.id, None)

    # -- the registry (other processes) --------------------------------------------------

    async def _save(self, sessions: Iterable[LiveSession]) -> None:
        """Write the sessions' rows; a database hiccup must not end a broadcast."""
        async with self._writing:
            entries = [s.entry() for s in sessions]  # taken in turn: never an older view last
            try:
                await asyncio.to_thread(
                    registry.save,
                    self.session_factory,
                    owner=self.owner,
                    entries=entries,
                    now=self.server_time(),
                )
            except Exception:
                log.exception("could not write %d live session(s) to the registry", len(entries))

    def _recent(self) -> tuple[LiveSession, ...]:
        """Sessions running or ended moments ago (whose devices may still answer)."""
        now = self.server_time()
        return tuple(
            s
            for s in self.sessions.values()
            if s.ended_at is None or now - s.ended_at < AFTER_END_S
        )

    async def _sync_loop(self) -> None:
        """While sessions run: refresh their rows, carry out stops asked by other processes."""
        while self._recent():
            await asyncio.sleep(SYNC_S)
            async with self._writing:
                entries = [s.entry() for s in self._recent()]  # see _save
                try:
                    asked = await asyncio.to_thread(
                        registry.sync,
                        self.session_factory,
                        owner=self.owner,
                        entries=entries,
                        now=self.server_time(),
                    )
                except Exception:  # a database hiccup must not end a broadcast
                    log.exception("could not refresh live sessions or read their stop requests")
                    asked = {}
            for sid, reason in asked.items():
                session = self.sessions.get(sid)
                if session is not None and session.end_reason is None:
                    task = asyncio.create_task(self._stop(sid, reason=reason))
                    self._stops.add(task)
                    task.add_done_callback(self._stops.discard)

    def _send_join(self, session: LiveSession, state: DeviceState) -> None:
        req = session.request
        join = LiveJoin(
            id=state.join_id,
            session_id=session.id,
            topic=live_topic(state.target.zone_id, session.id),
            frame_ms=self.frame_ms,
            playout_delay_ms=session.delay_ms,
            priority=req.priority,
            volume=req.volume,
            expires_at=self.server_time() + COMMAND_TTL_S,
        )
        self._commands[join.id] = (session.id, state.target.uid)
        self.outlet.publish(command_out(state.target.uid, join))

    def _rejoin(self, session: LiveSession) -> None:
        """Devices that never answered (offline at the start) get the join again."""
        now = self.server_time()
        if now - max(session.last_rejoin, session.started_at) < REJOIN_EVERY_S:
            return
        session.last_rejoin = now
        for state in session.devices.values():
            if state.status == "pending":
                state.join_id = self._new_id()
                self._send_join(session, state)

    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex[:16]

    # -- answers ----------------------------------------------------------------------------

    def claims(self, ack: Ack) -> bool:
        """True for the answer to a live join or leave of this process (any thread)."""
        return ack.id in self._commands

    def on_ack(self, device_uid: str, ack: Ack) -> None:
        """A bridge ack listener (any thread): a join's or leave's answer updates its device."""
        if not self.claims(ack):
            return  # a stored command's, or another process's session's
        log.debug("live ack %s from %s: ok=%s %s", ack.id, device_uid, ack.ok, ack.detail[:80])
        self._loop.call_soon_threadsafe(self._apply_ack, device_uid, ack)

    def unless_live(self, listener: AckListener) -> AckListener:
        """The listener, deaf to live joins' and leaves' answers (they are no stored command)."""

        def others(device_uid: str, ack: Ack) -> None:
            if not self.claims(ack):
                listener(device_uid, ack)

        return others

    def _apply_ack(self, device_uid: str, ack: Ack) -> None:
        known = self._commands.get(ack.id)
        if known is None or known[1] != device_uid:
            return
        session = self.sessions.get(known[0])
        state = session.devices.get(device_uid) if session else None
        if state is None:
            return
        if ack.id == state.join_id and ack.ok and state.status == "pending":
            state.status, state.detail, state.joined_at = "joined", ack.detail, self.server_time()
        elif ack.id == state.join_id and not ack.ok:
            state.status = "left" if state.status == "joined" else "refused"
            state.detail = ack.detail
        elif ack.id != state.join_id and ack.ok and state.status == "joined":
            state.status, state.detail = "left", ack.detail  # a leave acknowledged

    # -- microphone -------------------------------------------------------------------------

    def mic_session(self, session_id: str, *, reach: frozenset[int] | None) -> LiveSession:
        """The running mic session an ingest WebSocket feeds, or LiveError."""
        session = self.sessions.get(session_id)
        if session is None or session.ended_at is not None or not session.visible_to(reach):
            raise LiveError(f"No running live session {session_id!r}.", status=404)
        if session.request.source != "mic":
            raise LiveError("This session's audio does not come from a microphone.", status=409)
        return session

    def ingest(self, session: LiveSession, pcm: Any) -> None:
        """Pushed microphone samples (48 kHz mono)."""
        session.last_input = time.monotonic()
        session.source_status.state = "playing"
        session.queue.put(pcm)


def start_live_service(
    *, bridge: LiveBridge, session_factory: sessionmaker[Session], settings: ServerSettings
) -> LiveService:
    """The app's LiveService on the bridge's MQTT link, hearing its acks (in the lifespan)."""
    storage = ClipStorage(settings.data_dir / "clips")
    live = LiveService(
        session_factory=session_factory,
        outlet=bridge.link,
        clip_path=storage.dist_path,
        relay_allow=AllowList.parse(settings.relay_allowed_hosts),
        frame_ms=settings.live_frame_ms,
        send_ms=settings.live_send_ms,
    )
    bridge.add_ack_listener(live.on_ack)
    return live
