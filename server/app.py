"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from server import errors, openapi
from server.access.ratelimit import LoginLimiter
from server.audit.routes import router as audit_router
from server.broker.routes import router as broker_router
from server.broker.service import BrokerFiles, apply_broker_config
from server.bulletins.routes import router as bulletins_router
from server.bulletins.slot_routes import router as slots_router
from server.cap.routes import router as cap_router
from server.clips.routes import router as clips_router
from server.console.routes import install_console
from server.db import make_engine, make_session_factory, session_scope, utcnow
from server.devices.commands import ack_recorder
from server.devices.health_routes import router as device_health_router
from server.devices.routes import router as devices_router
from server.events.dispatch import Dispatcher
from server.events.ports import NoteReplan, Replanner
from server.events.sweep import OutboxSweep
from server.feedback.public_pages import router as feedback_pages_router
from server.feedback.routes import public_router as feedback_public_router
from server.feedback.routes import router as feedback_router
from server.live.routes import router as live_router
from server.live.service import LiveService, start_live_service
from server.metrics import Metrics
from server.mqtt_bridge import MqttBridge
from server.orgs.routes import router as orgs_router
from server.planner import Planner
from server.planner.routes import router as schedules_router
from server.plays.routes import router as plays_router
from server.programmes.routes import router as programmes_router
from server.public.routes import router as public_router
from server.relay.routes import router as relay_sources_router
from server.relay.runner import RelayRunner
from server.reports.routes import router as reports_router
from server.selftest.routes import router as selftest_router
from server.settings import ServerSettings
from server.sources.routes import router as sources_router
from server.users import accounts as users
from server.users.routes import router as users_router

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings | None = None, *, with_mqtt: bool = True) -> FastAPI:
    """Build the app; the lifespan opens the database and the one MQTT connection."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db_url)
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        with session_scope(app.state.session_factory) as db:
            if users.ensure_admin(db, password=settings.admin_secret()):
                log.info("created the bootstrap user 'admin'")
            if settings.manage_broker:
                apply_broker_config(db, settings=settings)
        bridge = None
        live: LiveService | None = None
        if with_mqtt:
            bridge = MqttBridge(
                settings=settings,
                session_factory=app.state.session_factory,
                metrics=app.state.metrics,
            )
            app.state.bridge = bridge
            live = start_live_service(
                bridge=bridge, session_factory=app.state.session_factory, settings=settings
            )
            app.state.live = live
            # A live join's or leave's answer is no stored command: only the session hears it.
            record = ack_recorder(app.state.session_factory, clock=lambda: app.state.clock())
            bridge.add_ack_listener(live.unless_live(record))
            await bridge.start()
        planner = None
        if bridge is not None and settings.planner_enabled:
            planner = Planner(
                engine=engine,
                session_factory=app.state.session_factory,
                publisher=bridge,
                clock=lambda: app.state.clock(),
                horizon_days=settings.schedule_horizon_days,
                tick_s=settings.planner_tick_s,
                settings=settings,
            )
            app.state.planner = planner
            planner.start()
        relays: RelayRunner | None = None
        if bridge is not None and planner is not None:  # frames go out from the leader only
            leader = planner
            relays = RelayRunner(
                session_factory=app.state.session_factory,
                outlet=bridge.link,
                settings=settings,
                is_leader=lambda: leader.is_leader,
                registry=app.state.metrics.registry,
            )
            await relays.start()
        replanner: Replanner = planner or NoteReplan(
            app.state.session_factory, lambda: app.state.clock()
        )
        dispatcher = Dispatcher(
            session_factory=app.state.session_factory,
            clock=lambda: app.state.clock(),
            outlet=bridge,
            broker=BrokerFiles(settings),
            replanner=replanner,
        )
        dispatcher.attach()
        app.state.dispatcher = dispatcher
        sweep = OutboxSweep(dispatcher, interval_s=settings.outbox_sweep_s)
        await sweep.start()
        try:
            yield
        finally:
            await sweep.stop()
            dispatcher.detach()
            if relays is not None:
                await relays.stop()
            if planner is not None:
                planner.stop()
                app.state.planner = None
            if live is not None:
                await live.close()  # every session ends (devices told) before the bridge stops
                app.state.live = None
            if bridge is not None:
                await bridge.stop()
            engine.dispose()

    app = FastAPI(
        title="Loa",
        summary="Commune IP loudspeaker clusters: clips, programmes, live audio, device health.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.bridge = None
    app.state.planner = None
    app.state.live = None  # the LiveService, started with the MQTT bridge
    app.state.clock = utcnow  # every "now" of the planner and the programme rules (tests swap it)
    app.state.login_limiter = LoginLimiter(
        max_failures=settings.login_max_failures, window_s=settings.login_window_s
    )
    errors.install(app)
    openapi.install(app)

    api = APIRouter(prefix="/api/v1")
    api.include_router(users_router)
    api.include_router(orgs_router)
    api.include_router(devices_router)
    api.include_router(device_health_router)
    api.include_router(selftest_router)
    api.include_router(clips_router)
    api.include_router(programmes_router)
    api.include_router(schedules_router)
    api.include_router(plays_router)
    api.include_router(reports_router)
    api.include_router(audit_router)
    api.include_router(live_router)
    api.include_router(broker_router)
    api.include_router(slots_router)
    api.include_router(sources_router)
    api.include_router(relay_sources_router)
    api.include_router(bulletins_router)
    api.include_router(cap_router)
    api.include_router(feedback_router)
    api.include_router(feedback_public_router)
    app.include_router(api)
    app.include_router(feedback_pages_router)
    app.include_router(public_router)
    install_console(app)

    @app.get("/healthz", tags=["system"], responses=openapi.problems(503))
    def healthz() -> dict[str, str]:
        """Liveness and readiness: database and broker connection."""
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        bridge = app.state.bridge
        mqtt = (
            "disabled" if bridge is None else ("connected" if bridge.link.is_connected else "down")
        )
        return {"status": "ok", "database": "ok", "mqtt": mqtt}

    @app.get("/metrics", tags=["system"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus metrics of this process."""
        return PlainTextResponse(generate_latest(app.state.metrics.registry).decode())

    return app
