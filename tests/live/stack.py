"""A whole server with live audio: SQLite, its own broker, admin signed in."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from server.broker.process import free_port, start_broker, stop_broker
from server.broker.service import apply_broker_config
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.settings import ServerSettings
from tests.server.stack import ADMIN_PASSWORD, Stack


@contextmanager
def live_stack(tmp_path: Path) -> Iterator[Stack]:
    """SQLite, a broker from server-generated files, the app with live audio, admin signed in."""
    with live_stacks(tmp_path, count=1) as (stack,):
        yield stack


@contextmanager
def live_stacks(tmp_path: Path, *, count: int) -> Iterator[tuple[Stack, ...]]:
    """Like live_stack, with `count` apps (as server processes would be) on one DB and broker."""
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'loa.db'}",
        mqtt_port=free_port(),
        mqtt_password=secrets.token_urlsafe(12),
        admin_password=ADMIN_PASSWORD,
        manage_broker=True,
        planner_enabled=False,
    )
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as db:
        conf = apply_broker_config(db, settings=settings)
    broker = start_broker(conf, host="127.0.0.1", port=settings.mqtt_port)
    engine.dispose()
    try:
        with ExitStack() as apps:
            stacks = []
            for _ in range(count):
                client = apps.enter_context(TestClient(create_app(settings)))
                r = client.post(
                    "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
                )
                r.raise_for_status()
                headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
                stacks.append(Stack(client=client, settings=settings, headers=headers))
            yield tuple(stacks)
    finally:
        stop_broker(broker)
