"""The agent: one MQTT link, birth and will, desired state, commands, telemetry, playout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from audio.clock import Clock, SystemClock
from audio.sinks import AudioSink
from edge_agent import agent_version, sdnotify
from edge_agent.capture import SIM_ACOUSTIC_FILE, AlsaCapture, Tap, make_capture
from edge_agent.commands import (
    RECENT_COMMANDS,
    CommandRefused,
    refused_command_id,
    self_test_args,
    tone_seconds_arg,
    volume_arg,
)
from edge_agent.hardware import Hardware, HardwareError
from edge_agent.localdb import LocalDbError
from edge_agent.output import make_sink_factory
from edge_agent.power import PowerMonitor
from edge_agent.runtime import PlayoutRuntime
from edge_agent.selftest import DailySelfTest, SelfTestRunner
from edge_agent.settings import AgentSettings, env_name
from edge_agent.silence import SilenceWatcher, baseline_level_db
from edge_agent.store import HeldState, StateStore
from edge_agent.telemetry import Sensors
from firmware_profiles import FirmwareProfile
from protocol import (
    SPECS,
    Ack,
    Birth,
    Command,
    DesiredState,
    LiveJoin,
    LiveLeave,
    Message,
    Offline,
    PowerState,
    ProtocolError,
    Telemetry,
    TopicKind,
    decode,
    device_topic,
    encode,
)
from protocol.mqtt_client import MqttLink, Outgoing, PublishError
from protocol.tls import client_context
from schedules import Priority

if TYPE_CHECKING:
    from edge_agent.eboard.server import BoardServer

log = logging.getLogger(__name__)

# Exit code asking the service manager for a restart (EX_TEMPFAIL); systemd:
# Restart=on-failure (or RestartForceExitStatus=75).
RESTART_EXIT_CODE = 75
INBOX_LIMIT = 256
REFUSAL_POLL_S = 0.5

_REFUSAL_ADVICE = (
    "the device credentials were revoked or are wrong; issue new ones in the console "
    "(the device's page, or POST /api/v1/devices/<n>/credentials) and set them as "
    "LOA_AGENT_MQTT_PASSWORD / mqtt_password, then restart the agent"
)


class Agent:
    """One edge agent on the running asyncio loop; run() returns the process exit code."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        profile: FirmwareProfile,
        hardware: Hardware,
        sensors: Sensors,
        clock: Callable[[], float] = time.time,
        timing_clock: Clock | None = None,
        sim: bool = False,
        open_sink: Callable[[], AudioSink] | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        self.profile = profile
        self.hardware = hardware
        self.sensors = sensors
        self._clock = clock
        self.boot_time = clock()
        self.version = agent_version()
        self.store = StateStore(data_dir=settings.state_dir)
        # Mains or battery (profile `power`); on battery ordinary volumes are capped.
        self.power = PowerMonitor(
            config=profile.power,
            device_id=self.device_id,
            data_dir=settings.state_dir,
            gpio_chip=profile.gpio_chip,
            clock=timing_clock or SystemClock(spin_s=0),
            server_time=lambda: self.runtime.sync.server_time(),
            record=lambda event: self.runtime.outbox.record_device_event(event),
            on_change=self._power_changed,
            sim=sim or profile.simulated,
        )
        self._player_volume: int | None = None  # what the player or live audio last asked
        self.held = HeldState(volume=self._capped(profile.volume.default))
        self.rejected: dict[str, int] = {}  # rejected incoming messages by reason (tests, logs)
        self.births = 0
        self.exit_code = 0
        self._topics = {kind: device_topic(self.device_id, kind) for kind in TopicKind}
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INBOX_LIMIT)
        self._stop = asyncio.Event()
        self._interval_changed = asyncio.Event()
        self._hardware_lock = asyncio.Lock()
        self._recent_commands: deque[str] = deque(maxlen=RECENT_COMMANDS)
        self._command_tasks: set[asyncio.Task[None]] = set()
        # Set once the broker has handled this connection's subscriptions (see _confirm_birth).
        self.subscribed = asyncio.Event()
        self.board_url: str | None = None  # e-boards: the page's URL once it is served
        self._board_server: BoardServer | None = None
        self.link = MqttLink(
            client_id=self.device_id,
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=self.device_id,
            password=settings.mqtt_password.get_secret_value(),
            on_message=self._on_message,
            on_connected=self._on_connected,
            will=lambda conn_id: self._status(Offline(conn_id=conn_id, reason="will")),
            keepalive=settings.keepalive_s,
            min_backoff=settings.min_backoff_s,
            max_backoff=settings.max_backoff_s,
            connect_timeout=settings.connect_timeout_s,
            tls=client_context(settings.tls_ca_file) if settings.tls else None,
            clock_wait=settings.clock_wait_s,
        )
        for kind in (TopicKind.STATE, TopicKind.COMMAND):
            self.link.subscribe(self._topics[kind], SPECS[kind].qos)
        # No final spin: every timed sound goes through a sink's sample-clock model, so a
        # wake-up a millisecond late changes nothing heard, while spinning for that millisecond
        # costs dozens of event-loop turns per sleep, idle or live (see audio.clock.coarse).
        self.timing_clock: Clock = timing_clock or SystemClock(spin_s=0)
        self.runtime = PlayoutRuntime(
            settings=settings,
            profile=profile,
            hardware=hardware,
            link=self.link,
            clock=self.timing_clock,
            open_sink=open_sink
            or make_sink_factory(
                profile=profile,
                data_dir=settings.state_dir,
                sim=sim,
                clock=self.timing_clock,
                output=settings.audio_output,
            ),
            desired_volume=lambda: (self._capped(self.held.volume), self.held.muted),
            set_volume=self._set_player_volume,
            reject=self._reject,
            on_schedule=self._schedule_applied,
            send_ack=self._send_ack,
        )
        # The acoustic self-test (issue 17); the sim's microphone hears what the test plays.
        tap = Tap()
        self.selftest = SelfTestRunner(
            player=self.runtime.player,
            db=self.runtime.db,
            outbox=self.runtime.outbox,
            capture=make_capture(profile=profile, data_dir=settings.state_dir, tap=tap),
            tap=tap,
            set_volume=lambda percent: self._set_volume(self._capped(percent)),
            desired_volume=lambda: self._capped(self.held.volume),
            server_time=lambda: self.runtime.sync.server_time(),
        )
        self.daily_selftest = DailySelfTest(runner=self.selftest, db=self.runtime.db, wall=clock)
        # Silence alarms (issue 17): the watcher sees every frame the player and the live
        # receiver write; horns are heard by the sim's microphone or, in short windows, by an
        # ALSA one of its own (never while the self-test holds it; see edge_agent.silence).
        mic = profile.capture
        sim_mic = mic is not None and mic.kind == "sim"
        alsa_mic = None
        if mic is not None and mic.kind == "alsa" and mic.alsa_device is not None:
            alsa_mic = AlsaCapture(device=mic.alsa_device, sample_rate=mic.sample_rate)
        db = self.runtime.db
        self.silence = SilenceWatcher(
            record=self.runtime.outbox.record_device_event,
            server_time=lambda: self.runtime.sync.server_time(),
            clips=self.runtime.cache,
            acoustic_file=settings.state_dir / SIM_ACOUSTIC_FILE if sim_mic else None,
            mic=alsa_mic,
            mic_busy=lambda: self.selftest.running,
            path_gain_db=lambda: baseline_level_db(db),
        )
        self.runtime.player.on_frame = self.silence.frame
        self.runtime.live.on_frame = self.silence.live_frame

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> int:
        """Connect, serve until request_stop() (or a signal), say goodbye; return the exit code."""
        await asyncio.to_thread(self.settings.state_dir.mkdir, parents=True, exist_ok=True)
        self.held = await asyncio.to_thread(self.store.load, default_volume=self.held.volume)
        log.info(
            "%s: starting (agent %s, profile %s, desired state version %s, data in %s)",
            self.device_id,
            self.version,
            self.profile.name,
            self.held.state_version,
            self.settings.state_dir,
        )
        await self._set_volume(self._capped(self.held.volume))
        try:
            await self.runtime.start()
        except LocalDbError as exc:
            log.error("%s: %s", self.device_id, exc)
            await self._close_hardware()
            return 1
        self.runtime.set_zones(self.held.zone_ids)
        self.held = self.held.model_copy(update={"schedule_version": self.runtime.schedule_version})
        await self._serve_board()
        link_task = asyncio.create_task(self.link.run(), name=f"{self.device_id}-link")
        helpers = [
            asyncio.create_task(self._process_inbox()),
            asyncio.create_task(self._telemetry_loop()),
            asyncio.create_task(self.daily_selftest.run()),
            asyncio.create_task(self.power.run()),
            asyncio.create_task(self._watch_refusals()),
            # READY=1 now, then watchdog pings from this loop (nothing unless under systemd).
            asyncio.create_task(sdnotify.serve(status=f"{self.device_id}: running")),
            *(asyncio.create_task(coro) for coro in self.runtime.coroutines()),
        ]
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({link_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if link_task.done() and not self._stop.is_set():
                log.error("%s: the MQTT link stopped unexpectedly: %r", self.device_id, link_task)
                self.exit_code = 1
        finally:
            with contextlib.suppress(Exception):
                await self.runtime.stop_audio()
            self.silence.close()  # a source check still running is moot now
            for task in (stop_task, *helpers, *self._command_tasks):
                task.cancel()
            await asyncio.gather(*helpers, *self._command_tasks, return_exceptions=True)
            if self._board_server is not None:
                await self._board_server.stop()
            await self.runtime.close_output()
            goodbye = None
            if self.link.is_connected:
                goodbye = self._status(Offline(conn_id=self.link.conn_id, reason="shutdown"))
            await self.link.close(last=goodbye)
            # A link sleeping between attempts (up to max_backoff_s) would only notice the
            # close when it wakes: cancel it rather than wait.
            await asyncio.wait({link_task}, timeout=1)
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link_task
            await asyncio.to_thread(self.runtime.close)
            await self._close_hardware()
            log.info("%s: stopped (exit code %s)", self.device_id, self.exit_code)
        return self.exit_code

    async def _serve_board(self) -> None:
        """E-boards: serve the board's page on 127.0.0.1; audio plays whether or not it can."""
        display, board = self.profile.display, self.runtime.board
        if display is None or board is None:
            return
        from edge_agent.eboard.server import BoardServer  # aiohttp: boards only

        port = display.port if self.settings.display_port is None else self.settings.display_port
        server = BoardServer(board=board, display=display, port=port)
        try:
            self.board_url = await server.start()
        except OSError as exc:
            log.error(
                "%s: cannot serve the e-board page on 127.0.0.1:%s (%s); set %s to a free "
                "port — audio keeps playing",
                self.device_id,
                port,
                exc.strerror or exc,
                env_name("display_port"),
            )
            return
        self._board_server = server
        log.info("%s: e-board page at %s", self.device_id, self.board_url)

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask run() to publish Offline(shutdown), disconnect and return exit_code."""
        if not self._stop.is_set():
            self.exit_code = exit_code
        self._stop.set()

    async def _close_hardware(self) -> None:
        try:
            await asyncio.to_thread(self.hardware.close)
        except HardwareError as exc:
            log.error("%s: could not release the hardware: %s", self.device_id, exc)

    # -- MQTT callbacks (on the loop thread; they must never raise) ---------------------

    def _on_connected(self, conn_id: str) -> None:
        log.info(
            "%s: connected to broker %s:%s (connection %s)",
            self.device_id,
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            conn_id,
        )
        self.subscribed.clear()
        self._publish_birth()
        self.runtime.connected()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.runtime.route_now(topic, payload):
            return  # clock answers and clip chunks: handled on arrival, not queued
        try:
            self._inbox.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self._reject("inbox_full", topic, f"more than {INBOX_LIMIT} messages waiting")

    def _reject(self, reason: str, topic: str, detail: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        log.warning("%s: rejected a message on %s (%s): %s", self.device_id, topic, reason, detail)

    # -- outgoing -----------------------------------------------------------------------

    def _status(self, message: Message) -> Outgoing:
        spec = SPECS[TopicKind.STATUS]
        return Outgoing(self._topics[TopicKind.STATUS], encode(message), spec.qos, spec.retain)

    def _publish_birth(self) -> bool:
        if not self.link.is_connected:
            return False
        birth = Birth(
            conn_id=self.link.conn_id,
            agent_version=self.version,
            firmware_profile=self.profile.name,
            boot_time=self.boot_time,
            state_version=self.held.state_version,
            schedule_version=self.held.schedule_version,
        )
        self.births += 1
        self._track(self._confirm_birth(self._status(birth)))
        return True

    async def _confirm_birth(self, birth: Outgoing) -> None:
        # The broker handles one client's packets in order and the subscriptions went out
        # before the birth: its PUBACK proves they are active.
        try:
            await self.link.publish_wait(birth, timeout=10)
        except PublishError as exc:
            log.warning("%s: birth not acknowledged: %s", self.device_id, exc)
            return
        self.subscribed.set()

    async def _send_ack(self, ack: Ack) -> None:
        spec = SPECS[TopicKind.ACK]
        out = Outgoing(self._topics[TopicKind.ACK], encode(ack), spec.qos, spec.retain)
        try:
            await self.link.publish_wait(out, timeout=10)
        except PublishError as exc:
            log.warning("%s: ack for command %s not delivered: %s", self.device_id, ack.id, exc)

    # -- incoming -----------------------------------------------------------------------

    async def _process_inbox(self) -> None:
        while True:
            topic, payload = await self._inbox.get()
            try:
                await self._handle(topic, payload)
            except Exception:  # a bug in one message's handling must not stop the agent
                self.rejected["handler_error"] = self.rejected.get("handler_error", 0) + 1
                log.exception("%s: failed to handle a message on %s", self.device_id, topic)

    async def _handle(self, topic: str, payload: bytes) -> None:
        if await self.runtime.handle(topic, payload):
            return
        if topic == self._topics[TopicKind.STATE]:
            kind = TopicKind.STATE
        elif topic == self._topics[TopicKind.COMMAND]:
            kind = TopicKind.COMMAND
        else:
            self._reject("bad_topic", topic[:200], "not a topic this agent reads")
            return
        try:
            message = decode(kind, payload)
        except ProtocolError as exc:
            self._reject(exc.reason, topic, str(exc))
            if kind is TopicKind.COMMAND:
                self._refuse_command(payload, exc)
            return
        if isinstance(message, DesiredState):
            await self._apply_state(message)
        elif isinstance(message, Command):
            self._start_command(message)
        elif isinstance(message, LiveJoin | LiveLeave):
            self._track(self.runtime.live.handle(message))

    async def _apply_state(self, state: DesiredState) -> None:
        held = self.held.state_version
        if held is not None and state.version <= held:
            if state.version < held:
                self._reject(
                    "stale_version",
                    self._topics[TopicKind.STATE],
                    f"desired state version {state.version} is older than the held {held}",
                )
            return
        new = self.held.model_copy(
            update={
                "state_version": state.version,
                "volume": state.volume,
                "muted": state.muted,
                "telemetry_interval_s": float(state.telemetry_interval_s),
                "zone_ids": tuple(state.zone_ids),
            }
        )
        try:
            # Persist before applying, so a crash in between never leaves an applied
            # version that a restart would not know it holds.
            await asyncio.to_thread(self.store.save, new)
        except OSError as exc:
            log.error(
                "%s: cannot save the desired state to %s (%s); applying it anyway — check "
                "that the data partition is writable and not full",
                self.device_id,
                self.store.path,
                exc,
            )
        interval_changed = new.telemetry_interval_s != self.held.telemetry_interval_s
        self.held = new
        self.runtime.set_zones(new.zone_ids)
        player = self.runtime.player
        player.nudge()
        if not player.busy:  # an item playing keeps its volume (emergency!) until it ends
            await self._set_volume(self._capped(new.volume))
            player.forget_volume()
        if interval_changed:
            self._interval_changed.set()
        await self.daily_selftest.configure(state.selftest_daily_at, state.selftest_volume)
        log.info(
            "%s: applied desired state version %s (volume %s%%, muted %s)",
            self.device_id,
            new.state_version,
            new.volume,
            new.muted,
        )
        self._publish_birth()  # the retained status shows the version now held

    # -- commands -----------------------------------------------------------------------

    def _start_command(self, cmd: Command) -> None:
        if cmd.id in self._recent_commands:
            self._reject("duplicate_command", self._topics[TopicKind.COMMAND], f"id {cmd.id}")
            return
        self._recent_commands.append(cmd.id)
        now = self._clock()
        if cmd.expired(now):
            late = now - cmd.expires_at
            log.info(
                "%s: ignored command %s (%s): it expired %.1f s ago (if commands keep arriving "
                "expired, check the device clock and NTP)",
                self.device_id,
                cmd.name,
                cmd.id,
                late,
            )
            detail = f"not carried out: expired {late:.1f} s before it was received"
            self._track(self._send_ack(Ack(id=cmd.id, ok=False, detail=detail)))
            return
        # A test tone takes seconds: run commands beside the inbox, not in it.
        self._track(self._run_command(cmd))

    def _refuse_command(self, payload: bytes, exc: ProtocolError) -> None:
        # A command with an id but a bad field (an expiry of NaN, year 9999...) is answered,
        # so the operator sees why it was not carried out instead of a command left pending.
        cmd_id = refused_command_id(payload)
        if cmd_id is None or cmd_id in self._recent_commands:
            return
        self._recent_commands.append(cmd_id)
        ack = Ack(id=cmd_id, ok=False, detail=f"refused: {exc}"[:500])
        self._track(self._send_ack(ack))

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _run_command(self, cmd: Command) -> None:
        try:
            ok, detail = True, await self._carry_out(cmd)
        except CommandRefused as exc:
            ok, detail = False, str(exc)
        except HardwareError as exc:
            ok, detail = False, f"hardware failed: {exc}"
        except Exception:
            log.exception("%s: command %s (%s) failed", self.device_id, cmd.name, cmd.id)
            ok, detail = False, "internal error; see the agent log"
        log.info("%s: command %s (%s): %s %s", self.device_id, cmd.name, cmd.id, ok, detail)
        await self._send_ack(Ack(id=cmd.id, ok=ok, detail=detail[:500]))
        if ok and cmd.name == "restart_agent":
            self.request_stop(RESTART_EXIT_CODE)

    async def _carry_out(self, cmd: Command) -> str:
        if cmd.name == "set_volume":
            wanted = volume_arg(cmd.args)
            applied = self._capped(wanted)
            if not await self._set_volume(applied, raise_errors=True):
                raise CommandRefused("volume not set")
            why = "on battery" if self.power.volume_cap == applied else "the profile's maximum"
            capped = f" (capped at {applied}%: {why})" if applied != wanted else ""
            return f"volume set to {applied}%{capped}"
        if cmd.name == "test_tone":
            seconds = tone_seconds_arg(cmd.args)
            await self._play_test_tone(seconds)
            return f"played a {seconds:g} s test tone"
        if cmd.name == "self_test":
            volume, rebaseline = self_test_args(cmd.args)
            event = await self.selftest.run(
                command_id=cmd.id,
                volume=self.daily_selftest.volume if volume is None else volume,
                rebaseline=rebaseline,
            )
            if event["code"] in ("failed", "interrupted"):
                raise CommandRefused(event["detail"])  # no verdict: ok=false, saying why
            return str(event["detail"])
        if cmd.name == "resync":
            if not self._publish_birth():
                raise CommandRefused("not connected")
            return "birth republished"
        if cmd.name == "restart_agent":
            return "restarting"
        raise CommandRefused(f"unknown command {cmd.name!r}")  # decode() already refuses these

    async def _play_test_tone(self, seconds: float) -> None:
        amp = self.profile.amplifier
        switched = amp.kind != "none"
        async with self._hardware_lock:
            if switched:
                await asyncio.to_thread(self.hardware.set_amplifier, True)
                await asyncio.sleep(amp.warmup_ms / 1000)  # PA amplifiers mute while warming up
            try:
                await asyncio.to_thread(self.hardware.play_test_tone, seconds)
            finally:
                if switched:
                    await asyncio.to_thread(self.hardware.set_amplifier, False)

    def _schedule_applied(self, version: int) -> None:
        self.held = self.held.model_copy(update={"schedule_version": version})
        self._publish_birth()  # the retained status shows the schedule version now held

    async def _set_player_volume(self, percent: int) -> None:
        self._player_volume = percent
        cap = self.power.volume_cap
        # On battery every ordinary volume (an item's own, a live session's) is capped, but an
        # emergency keeps the profile's emergency volume: a warning must be heard, and it is
        # short next to the hours the cap saves.
        if cap is not None and not (
            percent == self.profile.volume.emergency and self._emergency_on_air()
        ):
            percent = min(percent, cap)
        await self._set_volume(percent)

    def _emergency_on_air(self) -> bool:
        """An emergency item or live session holds (or is about to take) the horns."""
        live = self.runtime.live.current
        if live is not None and live.join.priority == "emergency":
            return True
        return any(
            seg.item.priority is Priority.EMERGENCY and seg.task is not None and not seg.task.done()
            for seg in self.runtime.player.segments
        )

    async def _power_changed(self, state: PowerState) -> None:
        """Apply (or lift) the battery cap now; an emergency playing keeps its volume."""
        player = self.runtime.player
        if self._emergency_on_air():
            pass  # the next item sets its own volume (forget_volume below)
        elif player.busy and self._player_volume is not None:
            # The item playing is capped at once; back on mains, the next item is louder
            # again (an item keeps its volume until it ends, as in _apply_state).
            await self._set_player_volume(self._player_volume)
        elif not player.busy:
            await self._set_volume(self._capped(self.held.volume))
        player.forget_volume()
        player.nudge()
        self._interval_changed.set()  # a telemetry sample now: the dashboard shows it at once

    def _capped(self, volume: int) -> int:
        cap = self.power.volume_cap
        return min(volume, self.profile.volume.max, 100 if cap is None else cap)

    async def _set_volume(self, percent: int, *, raise_errors: bool = False) -> bool:
        async with self._hardware_lock:
            try:
                await asyncio.to_thread(self.hardware.set_volume, percent)
            except HardwareError as exc:
                if raise_errors:
                    raise
                log.error("%s: cannot set the volume to %s%%: %s", self.device_id, percent, exc)
                return False
        return True

    # -- telemetry and link health ---------------------------------------------------------

    def telemetry_interval(self) -> float:
        """Seconds between samples: the desired state's value once one is held, else settings."""
        if self.held.telemetry_interval_s is not None:
            return self.held.telemetry_interval_s
        return self.settings.telemetry_interval_s

    async def _telemetry_loop(self) -> None:
        while True:
            await self.link.connected.wait()
            await self._send_telemetry()
            self._interval_changed.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # lands as the interval changes, and the agent then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.telemetry_interval()):
                    await self._interval_changed.wait()

    async def _send_telemetry(self) -> None:
        sample = await asyncio.to_thread(self.sensors.sample)
        if sample is None or not self.link.is_connected:
            return
        estimate = self.runtime.sync.estimate
        offset_ms = self.runtime.sync.offset_ms()
        refused = self.link.tls_refusals
        link = self.runtime.sync.link_ms()
        longest = self.runtime.sync.link_max_ms()
        try:
            message = Telemetry(
                **vars(sample),
                **self.power.telemetry_fields(),
                agent_version=self.version,
                firmware_profile=self.profile.name,
                state_version=self.held.state_version,
                schedule_version=self.held.schedule_version,
                rejected_messages=sum(self.rejected.values()),
                clock_offset_ms=None if offset_ms is None else round(offset_ms, 3),
                clock_error_ms=None if estimate is None else round(estimate.error * 1000, 3),
                link_rtt_ms=None if link is None else round(link[0], 3),
                link_rtt_p95_ms=None if link is None else round(link[1], 3),
                link_rtt_max_ms=None if longest is None else round(longest, 3),
                tls_refusals=self.link.tls_refusal_count or None,
                tls_refused=refused[-1].summary() if refused else None,
            )
        except ValidationError as exc:
            log.warning("%s: telemetry sample out of range, not sent: %s", self.device_id, exc)
            return
        spec = SPECS[TopicKind.TELEMETRY]
        self.link.publish(
            Outgoing(self._topics[TopicKind.TELEMETRY], encode(message), spec.qos, spec.retain)
        )

    async def _watch_refusals(self) -> None:
        # MqttLink logs each refused CONNACK; this adds, once per episode, what to do about it.
        reported: str | None = None
        while True:
            reason = self.link.refused_reason
            if reason is not None and reason != reported:
                advice = (
                    _REFUSAL_ADVICE
                    if "authori" in reason.lower() or "password" in reason.lower()
                    else "check the broker's log"
                )
                log.error(
                    "%s: broker %s:%s refused the connection: %s — %s; retrying with backoff "
                    "up to %gs",
                    self.device_id,
                    self.settings.mqtt_host,
                    self.settings.mqtt_port,
                    reason,
                    advice,
                    self.settings.max_backoff_s,
                )
            reported = reason
            await asyncio.sleep(REFUSAL_POLL_S)
