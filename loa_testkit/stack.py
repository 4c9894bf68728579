"""A whole server for tests: migrated database, its own Mosquitto, the app, a signed-in admin.

The one place that starts a real stack; tests/ wraps it in thin pytest fixtures.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loa_testkit.brokerfix import HOST, TestBroker
from server.app import create_app
from server.broker.process import free_port, start_broker, stop_broker
from server.broker.service import apply_broker_config
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.settings import ServerSettings

if TYPE_CHECKING:  # imported where used: only some tests serve over HTTP or run agents
    import uvicorn

    from edge_agent.agent import Agent

ADMIN_PASSWORD = "admin-test-password"


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL of the given kind ('sqlite' or 'postgresql')."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'loa.db'}"
        return
    admin_url = os.environ["LOA_TEST_DATABASE_URL"]
    name = f"loa_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stack_settings(
    data_dir: Path, db_url: str, *, admin_password: str = ADMIN_PASSWORD, **extra: Any
) -> ServerSettings:
    """Server settings for a test: a free MQTT port, a fresh broker password, a known admin."""
    values: dict[str, Any] = {
        "mqtt_port": free_port(),
        "mqtt_password": secrets.token_urlsafe(12),
        "admin_password": admin_password,
        "manage_broker": True,
    } | extra
    return ServerSettings(data_dir=data_dir, database_url=db_url, **values)


def prepare(settings: ServerSettings, *, with_broker: bool = True) -> Path | None:
    """Migrate the database; with a broker, write its files from it and return the config."""
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        if not with_broker:
            return None
        with session_scope(make_session_factory(engine)) as db:
            return apply_broker_config(db, settings=settings)
    finally:
        engine.dispose()


@dataclass
class ServerBroker:
    """The server's Mosquitto, run from the files `prepare` wrote; tests may stop and restart it."""

    conf: Path
    port: int
    proc: Popen[bytes] | None = None

    def start(self) -> None:
        """Start the broker process."""
        self.proc = start_broker(self.conf, host=HOST, port=self.port)

    def stop(self) -> None:
        """Stop it (a no-op when stopped)."""
        if self.proc is not None:
            stop_broker(self.proc)
            self.proc = None


@contextmanager
def prepared(
    settings: ServerSettings, *, with_broker: bool = True
) -> Iterator[ServerBroker | None]:
    """A migrated database and, unless with_broker is False, the server's broker for the block."""
    conf = prepare(settings, with_broker=with_broker)
    if conf is None:
        yield None
        return
    broker = ServerBroker(conf, settings.mqtt_port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def admin_headers(
    client: TestClient | httpx.Client, password: str = ADMIN_PASSWORD
) -> dict[str, str]:
    """Sign in as the admin; the bearer header for later calls."""
    r = client.post("/api/v1/auth/token", data={"username": "admin", "password": password})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class Stack:
    """Handles to a running test server."""

    client: TestClient
    settings: ServerSettings
    headers: dict[str, str]

    @property
    def app(self):  # type: ignore[no-untyped-def]
        """The FastAPI app."""
        return self.client.app

    def session(self):  # type: ignore[no-untyped-def]
        """A database session on the app's engine."""
        return session_scope(self.client.app.state.session_factory)  # type: ignore[attr-defined]


@contextmanager
def server_stack(db_url: str, data_dir: Path, *, with_broker: bool = True) -> Iterator[Stack]:
    """Migrate, start a broker from server-generated files, run the app, sign in as admin."""
    settings = stack_settings(data_dir, db_url, manage_broker=with_broker)
    with (
        prepared(settings, with_broker=with_broker),
        TestClient(create_app(settings, with_mqtt=with_broker)) as client,
    ):
        yield Stack(client=client, settings=settings, headers=admin_headers(client))


@contextmanager
def live_stacks(tmp_path: Path, *, count: int, kind: str = "sqlite") -> Iterator[tuple[Stack, ...]]:
    """One database, one broker, `count` apps with live audio (as server processes), admin in."""
    with database(kind, tmp_path) as url, ExitStack() as apps:
        settings = stack_settings(tmp_path / "data", url, planner_enabled=False)
        apps.enter_context(prepared(settings))
        stacks = []
        for _ in range(count):
            client = apps.enter_context(TestClient(create_app(settings)))
            stacks.append(Stack(client=client, settings=settings, headers=admin_headers(client)))
        yield tuple(stacks)


@contextmanager
def live_stack(tmp_path: Path) -> Iterator[Stack]:
    """SQLite, a broker from server-generated files, the app with live audio, admin signed in."""
    with live_stacks(tmp_path, count=1) as (stack,):
        yield stack


def serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve an app with uvicorn in a thread on 127.0.0.1:port; return once it accepts."""
    import uvicorn

    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return server, thread


def stack_agent(
    settings: ServerSettings, uid: str, data_dir: Path, *, password: str, **agent: Any
) -> Agent:
    """An in-process simulated agent on the test server's broker, with its device password."""
    from loa_testkit.harness import make_agent

    broker = cast(TestBroker, SimpleNamespace(host=HOST, port=settings.mqtt_port))
    return make_agent(broker, uid, data_dir, password=password, **agent)  # reads host and port
