"""A whole server for tests: migrated database, its own Mosquitto, the app, a signed-in admin."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from server.app import create_app
from server.broker.process import free_port, start_broker, stop_broker
from server.broker.service import apply_broker_config
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.settings import ServerSettings

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
    settings = ServerSettings(
        data_dir=data_dir,
        database_url=db_url,
        mqtt_port=free_port(),
        mqtt_password=secrets.token_urlsafe(12),
        admin_password=ADMIN_PASSWORD,
        manage_broker=with_broker,
    )
    engine = make_engine(db_url)
    upgrade(engine)
    broker = None
    if with_broker:
        with session_scope(make_session_factory(engine)) as db:
            conf = apply_broker_config(db, settings=settings)
        broker = start_broker(conf, host="127.0.0.1", port=settings.mqtt_port)
    engine.dispose()
    try:
        app = create_app(settings, with_mqtt=with_broker)
        with TestClient(app) as client:
            r = client.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
            )
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            yield Stack(client=client, settings=settings, headers=headers)
    finally:
        if broker is not None:
            stop_broker(broker)
