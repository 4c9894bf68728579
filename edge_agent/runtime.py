"""Everything an agent needs to play its schedule offline, wired together.

The local database, the clip cache and fetcher, the clock-offset estimator, the player
and the proof-of-play outbox; the agent routes the MQTT messages they read and runs the
coroutines they need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from audio.clock import Clock
from audio.sinks import AudioSink
from edge_agent.clipfetch import ClipFetcher
from edge_agent.clips import MIB, ClipCache
from edge_agent.clocksync import ClockSync
from edge_agent.eboard.board import Board, BoardArbiter
from edge_agent.hardware import Hardware
from edge_agent.live import LiveReceiver
from edge_agent.localdb import LocalDb
from edge_agent.outbox import Outbox
from edge_agent.playback import INTERRUPTED, Interrupted, PlayOutcome
from edge_agent.player import Player
from edge_agent.relay import RelayFrames, load_opus, relay_windows
from edge_agent.settings import AgentSettings
from edge_agent.soundcard import SoundCard
from firmware_profiles import FirmwareProfile
from protocol import (
    LIVE_QOS,
    PREFIX,
    SPECS,
    Ack,
    ClipRequest,
    EventAck,
    Message,
    ProtocolError,
    ScheduleMessage,
    TimeResponse,
    TopicError,
    TopicKind,
    decode,
    device_topic,
    encode,
    live_topic,
    parse_zone_clip_topic,
    zone_clip_filter,
)
from protocol.mqtt_client import MqttLink, Outgoing
from schedules import PlaybackItem, ScheduleDocument

log = logging.getLogger(__name__)

OUTCOME_MEMORY = timedelta(days=14)  # outcomes older than this can no longer recur
ZONE_PREFIX = f"{PREFIX}/zone/"
Reject = Callable[[str, str, str], None]


class PlayoutRuntime:
    """Schedule, clips, clock, player and outbox of one agent."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        profile: FirmwareProfile,
        hardware: Hardware,
        link: MqttLink,
        clock: Clock,
        open_sink: Callable[[], AudioSink],
        desired_volume: Callable[[], tuple[int, bool]],
        set_volume: Callable[[int], Awaitable[None]],
        reject: Reject,
        on_schedule: Callable[[int], None],
        send_ack: Callable[[Ack], Awaitable[None]],
    ) -> None:
        self.device_id = settings.device_id
        self.link = link
        self.clock = clock
        self._reject = reject
        self._on_schedule = on_schedule
        self.topics = {kind: device_topic(self.device_id, kind) for kind in TopicKind}
        self.db = LocalDb(data_dir=settings.state_dir)
        self.cache = ClipCache(
            clip_dir=settings.state_dir / "clips",
            db=self.db,
            quota_bytes=int(settings.clip_quota_mb * MIB),
            wall=clock.time,
        )
        self.fetcher = ClipFetcher(
            cache=self.cache,
            db=self.db,
            clock=clock,
            send_request=self._send_clip_request,
            holdoff_s=settings.clip_holdoff_s,
            retry_max_s=settings.clip_retry_max_s,
            on_clip_ready=lambda _sha: self.player.nudge(),
        )
        self.sync = ClockSync(
            clock=clock,
            send=self._send_time_request,
            interval_s=settings.clock_sync_interval_s,
            window_s=settings.clock_sync_window_s,
            fast_interval_s=settings.clock_sync_fast_interval_s,
            stable_error_s=settings.clock_sync_stable_error_ms / 1000,
            live_interval_s=settings.clock_sync_live_interval_s,
        )
        self.outbox = Outbox(
            db=self.db,
            link=link,
            topic=self.topics[TopicKind.EVENTS],
            clock=clock,
            resend_after_s=settings.event_resend_s,
        )
        # The player and live audio take turns on one output (one WAV when simulated).
        self.card = SoundCard(open_device=open_sink, clock=clock)
        # Frames of the relay items the held schedule names (no live join: see relay.py).
        self.relay = RelayFrames()
        self._relay_topics: set[str] = set()
        self.player = Player(
            clock=clock,
            timebase=self.sync,
            clips=self.cache,
            open_sink=self.card.lease,
            hardware=hardware,
            profile=profile,
            play_log=self,
            desired_volume=desired_volume,
            set_volume=set_volume,
            lead_s=settings.player_lead_s,
            slot_grace=timedelta(seconds=settings.slot_grace_s),
            software_volume=not profile.simulated and profile.audio.mixer_control is None,
            relay_frames=self.relay,
        )
        # E-boards: the page follows the player's timeline (see edge_agent/eboard/board.py).
        self.document: ScheduleDocument | None = None
        self.board: Board | None = None
        if profile.display is not None:
            self.board = Board(
                document=lambda: self.document,
                server_time=self.sync.server_time,
                link_up=lambda: link.is_connected,
            )
        self.live = LiveReceiver(
            link=link,
            clock=clock,
            server_now=self.sync.server_time,
            open_sink=self.card.lease,
            send_ack=send_ack,
            arbiter=self.player if self.board is None else BoardArbiter(self.player, self.board),
            record=self.outbox.record,
            set_volume=set_volume,
            emergency_volume=profile.volume.emergency,
            output_latency_s=profile.audio.output_latency_ms / 1000,
            zones=lambda: self.zone_ids,
            on_sent=self.sync.frame_sent,
        )
        self.player.on_live_preempted = self.live.preempt
        self.zone_ids: frozenset[int] = frozenset()
        for kind in (TopicKind.SCHEDULE, TopicKind.EVENTS_ACK, TopicKind.CLIP):
            link.subscribe(self.topics[kind], SPECS[kind].qos)
        link.subscribe(self.topics[TopicKind.TIME_RESPONSE], SPECS[TopicKind.TIME_RESPONSE].qos)

    @property
    def schedule_version(self) -> int | None:
        """Version of the schedule document held, or None."""
        return None if self.document is None else self.document.version

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, recover from a crash and hand the held schedule to the player."""
        await asyncio.to_thread(self.db.open)
        held = await asyncio.to_thread(self.db.schedule)
        if held is not None:
            try:
                self.document = ScheduleDocument.model_validate_json(held[1])
            except ValidationError as exc:
                log.error("the held schedule is unreadable (%s); waiting for the server's", exc)
        downloads = [row.sha256 for row in await asyncio.to_thread(self.db.downloads)]
        await asyncio.to_thread(self.cache.load, downloads=downloads)
        await asyncio.to_thread(self.fetcher.resume)
        on_air = await asyncio.to_thread(self.db.on_air)
        items = set() if self.document is None else {i.item_id for i in self.document.items}
        for event in await asyncio.to_thread(self.db.interrupted):
            if (
                on_air is not None
                and on_air.item_id == event["item_id"]
                and on_air.item_id in items
            ):
                # Cut while heard: the player picks it up in step; one proof when it ends.
                cut = Interrupted(event["actual_start"], on_air.position_s, on_air.heard_at)
                self.player.rejoin(on_air.item_id, cut)
                continue
            await self.outbox.record(
                item_id=event["item_id"], planned_start=event["planned_start"], event=event
            )
        before = self.clock.time() - OUTCOME_MEMORY.total_seconds()
        await asyncio.to_thread(self.db.prune_outcomes, before=before)
        self.player.restore_done(await asyncio.to_thread(self.db.finished_items))
        if self.document is not None:
            await self._use(self.document, fresh=set())
            log.info(
                "%s: holding schedule version %s (%d items, %d clips, %d missing)",
                self.device_id,
                self.document.version,
                len(self.document.items),
                len(self.document.clips),
                len(self.fetcher.missing()),
            )

    def coroutines(self) -> list[Coroutine[Any, Any, None]]:
        """What must run beside the agent's own loops."""
        coros = [self.player.run(), self.fetcher.run(), self.sync.run(), self.outbox.run()]
        if self.board is not None:
            coros.append(self.board.run())
        return coros

    async def stop_audio(self) -> None:
        """Leave any live session (recording its proof) before the coroutines are cancelled."""
        await self.live.close()

    async def close_output(self) -> None:
        """Release the sound card (after the coroutines were cancelled)."""
        if self.board is not None:
            self.board.close()
        await self.card.close()

    def close(self) -> None:
        """Close the database (after the coroutines were cancelled)."""
        self.db.close()

    def connected(self) -> None:
        """After each (re)connect: probe the clock, ask for clips, resend events."""
        self.sync.connected()
        self.fetcher.connected()
        self.outbox.wake()

    # -- routing ----------------------------------------------------------------------------

    def route_now(self, topic: str, payload: bytes) -> bool:
        """Handle time answers and clip chunks on arrival; False for the agent's inbox."""
        if topic == self.topics[TopicKind.TIME_RESPONSE]:
            received = self.clock.monotonic()  # t3: before anything else
            try:
                response = decode(TopicKind.TIME_RESPONSE, payload)
            except ProtocolError as exc:
                self._reject(exc.reason, topic, str(exc))
                return True
            assert isinstance(response, TimeResponse)
            self.sync.on_response(response, received=received)
            return True
        if topic == self.topics[TopicKind.CLIP]:
            self.fetcher.offer(None, payload)
            return True
        if self.relay.offer_topic(topic, payload):
            return True  # a scheduled relay's frames: kept for the player, decoded now
        arrived = self.clock.monotonic()  # before decoding: answers compare with it
        if self.live.on_message(topic, payload):
            self.sync.stream_arrival(topic, arrived)  # stalls show as gaps
            return True  # live frames go to the jitter buffer on arrival
        if topic.startswith(ZONE_PREFIX):
            try:
                zone_id, sha = parse_zone_clip_topic(topic)
            except TopicError:
                return False
            if zone_id in self.zone_ids:  # the broker may still deliver a zone we left
                self.fetcher.offer(sha, payload)
            return True
        return False

    async def handle(self, topic: str, payload: bytes) -> bool:
        """Handle a queued message of ours (schedule, event acks); False if not ours."""
        if topic == self.topics[TopicKind.SCHEDULE]:
            kind = TopicKind.SCHEDULE
        elif topic == self.topics[TopicKind.EVENTS_ACK]:
            kind = TopicKind.EVENTS_ACK
        else:
            return False
        try:
            message = decode(kind, payload)
        except ProtocolError as exc:
            self._reject(exc.reason, topic, f"{exc}; keeping the schedule held")
            return True
        if isinstance(message, EventAck):
            self.outbox.on_ack(message)
        elif isinstance(message, ScheduleMessage):
            await self.apply_schedule(message.document)
        return True

    def set_zones(self, zone_ids: Sequence[int]) -> None:
        """Read the clip topics of exactly these zones from now on."""
        wanted = frozenset(zone_ids)
        for zone_id in sorted(wanted - self.zone_ids):
            self.link.subscribe(zone_clip_filter(zone_id), SPECS[TopicKind.CLIP].qos)
        # MqttLink has no unsubscribe: chunks of a zone we left are ignored in route_now,
        # and the server's regenerated broker ACL stops them.
        self.zone_ids = wanted
        self._follow_relays()

    def _follow_relays(self) -> None:
        """Read the live topics of the held schedule's relay sessions in every zone of ours."""
        sessions = self.relay.expected()
        wanted = {live_topic(z, sid) for z in self.zone_ids for sid in sessions}
        for topic in sorted(wanted - self._relay_topics):
            self.link.subscribe(topic, LIVE_QOS)
        for topic in sorted(self._relay_topics - wanted):
            self.link.unsubscribe(topic)
        self._relay_topics = wanted

    # -- schedule ---------------------------------------------------------------------------

    async def apply_schedule(self, document: ScheduleDocument) -> bool:
        """Hold a newer schedule document; False (logged, counted) when it is refused."""
        topic = self.topics[TopicKind.SCHEDULE]
        if document.device_id != self.device_id:
            self._reject("wrong_device", topic, f"document is for {document.device_id[:64]!r}")
            return False
        held = self.schedule_version
        if held is not None and document.version <= held:
            if document.version < held:
                self._reject(
                    "stale_version",
                    topic,
                    f"schedule version {document.version} is older than the held {held}",
                )
            return False  # the same version again: a retained redelivery
        await asyncio.to_thread(
            self.db.save_schedule,
            version=document.version,
            document=document.model_dump_json(),
            applied_at=self.clock.time(),
        )
        before = set() if self.document is None else {i.item_id for i in self.document.items}
        self.document = document
        await self._use(document, fresh={i.item_id for i in document.items} - before)
        log.info(
            "%s: applied schedule version %s (%d items, %d clips, %d to fetch)",
            self.device_id,
            document.version,
            len(document.items),
            len(document.clips),
            len(self.fetcher.missing()),
        )
        self._on_schedule(document.version)
        return True

    async def _use(self, document: ScheduleDocument, *, fresh: set[str]) -> None:
        shas = [clip.sha256 for clip in document.clips]
        windows = relay_windows(document.items)
        if windows:
            await asyncio.to_thread(load_opus)
        self.relay.expect(windows)
        self._follow_relays()
        await asyncio.to_thread(self.cache.pin, shas)
        self.fetcher.want(shas)
        await self.player.set_schedule(document.items, fresh=fresh)
        if self.board is not None:
            self.board.refresh()

    # -- the play log (Player's PlayLog) ----------------------------------------------------

    def _event(self, item: PlaybackItem, **fields: Any) -> dict[str, Any]:
        return {
            "kind": "play",
            "item_id": item.item_id,
            "programme_id": item.programme_id,
            "priority": item.priority.value,
            "planned_start": item.start.timestamp(),
            "clock_offset_ms": self.sync.offset_ms(),
            "clock_error_ms": self.sync.error_ms(),
            **fields,
        }

    async def started(self, item: PlaybackItem, actual_start: float) -> None:
        """Remember the start, so a crash before the end is still reported."""
        event = self._event(item, actual_start=actual_start, outcome="failed", reason=INTERRUPTED)
        await asyncio.to_thread(self.db.mark_started, item_id=item.item_id, event=event)
        for clip in item.clips:
            await asyncio.to_thread(self.cache.touch, clip.sha256)

    async def finished(self, outcome: PlayOutcome) -> None:
        """Put the outcome in the outbox."""
        if self.board is not None:
            self.board.finished(outcome.item, ended_at=outcome.ended_at)
        event = self._event(
            outcome.item,
            actual_start=outcome.actual_start,
            ended_at=outcome.ended_at,
            outcome=outcome.outcome,
            reason=outcome.reason[:300],
        )
        if outcome.resumed_at_s is not None:
            event["resumed_at_s"] = outcome.resumed_at_s
        if outcome.relay_mode is not None:
            event["relay_mode"] = outcome.relay_mode
            event["relayed_s"] = outcome.relayed_s
            event["fallback_s"] = outcome.fallback_s
            event["silent_s"] = outcome.silent_s
        await self.outbox.record(
            item_id=outcome.item.item_id, planned_start=event["planned_start"], event=event
        )

    async def on_air(self, item: PlaybackItem, *, position_s: float, at: float) -> None:
        """Remember the segment heard now, so a restart inside the item rejoins it in step."""
        if self.board is not None:
            self.board.on_air(item, at=at)  # shown at the heard instant, not now
        await asyncio.to_thread(
            self.db.mark_on_air, item_id=item.item_id, position_s=position_s, heard_at=at
        )

    async def off_air(self, item: PlaybackItem, *, at: float) -> None:
        """The item was suspended: a restart must not rejoin it as if it were playing."""
        if self.board is not None:
            self.board.off_air(item)
        await asyncio.to_thread(self.db.clear_on_air, item_id=item.item_id, heard_at=at)

    async def ignored(self, items: Sequence[PlaybackItem]) -> None:
        """Items over before this device held them: remembered so a restart skips them too."""
        rows = [(i.item_id, i.start.timestamp()) for i in items]
        await asyncio.to_thread(self.db.mark_ignored, rows)

    # -- outgoing ---------------------------------------------------------------------------

    def _publish(self, kind: TopicKind, message: Message) -> bool:
        if not self.link.is_connected:
            return False
        spec = SPECS[kind]
        self.link.publish(Outgoing(self.topics[kind], encode(message), spec.qos, spec.retain))
        return True

    def _send_clip_request(self, request: ClipRequest) -> bool:
        return self._publish(TopicKind.CLIP_REQUEST, request)

    def _send_time_request(self, request: Message) -> bool:
        return self._publish(TopicKind.TIME_REQUEST, request)
