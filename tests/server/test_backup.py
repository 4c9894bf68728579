"""`loa-server backup` while the server runs, `restore` into a fresh data dir, and a real agent
process that reconnects to the restored server with its old credentials and schedule."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import text

from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import agent_env
from loa_testkit.playfix import make_clip
from loa_testkit.stack import (
    ADMIN_PASSWORD,
    ServerBroker,
    Stack,
    admin_headers,
    database,
    prepared,
)
from server.app import create_app
from server.backup import BackupError, write_backup
from server.broker.process import free_port
from server.clips.models import Clip as ClipRow
from server.clips.storage import ClipStorage
from server.db import make_engine
from server.migrate import alembic_config
from server.settings import ServerSettings
from tests.server.conftest import BACKENDS
from tests.server.test_programmes_fixtures import FakeClock, World, has_mosquitto, one_off


def _settings(data_dir: Path, *, port: int, server_port: int, password: str) -> ServerSettings:
    return ServerSettings(
        data_dir=data_dir, mqtt_port=port, mqtt_server_port=server_port, mqtt_password=password,
        admin_password=ADMIN_PASSWORD, manage_broker=True,
    )  # fmt: skip


@contextmanager
def _serving(settings: ServerSettings, conf: Path | None = None) -> Iterator[World]:
    """Broker (from `conf`, else freshly generated) and app on the real clock, signed in."""
    with ExitStack() as stack:
        if conf is None:
            settings.data_dir.mkdir(parents=True)
            stack.enter_context(prepared(settings))
        else:
            broker = ServerBroker(conf, settings.mqtt_port)
            broker.start()
            stack.callback(broker.stop)
        client = stack.enter_context(TestClient(create_app(settings, with_mqtt=True)))
        yield World(stack=Stack(client, settings, admin_headers(client)), clock=FakeClock())


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _store_clip(w: World, tmp: Path) -> tuple[int, str]:
    """A real Ogg/Opus clip in the store and its row, as the upload pipeline leaves them."""
    clip = make_clip(tmp / "src", seconds=1)
    path = ClipStorage(w.stack.settings.data_dir / "clips").dist_path(clip.sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clip.data)
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        row = ClipRow(
            sha256=clip.sha256, original_sha256=clip.sha256, title="Bản tin sao lưu",
            original_duration_s=1.0, original_sample_rate=48000, original_channels=1,
            original_size_bytes=len(clip.data), duration_s=1.0, size_bytes=len(clip.data),
            peaks=[],
        )  # fmt: skip
        db.add(row)
        db.flush()
        return int(row.id), clip.sha256


def _schedule(w: World, device_id: int) -> dict[str, Any]:
    return dict(w.get(f"/devices/{device_id}/schedule"))


def test_backup_while_running_then_restore_and_the_agent_keeps_its_schedule(
    tmp_path: Path,
) -> None:
    if not has_mosquitto():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    port, server_port, password = free_port(), free_port(), secrets.token_urlsafe(12)
    old_dir, new_dir, dest = tmp_path / "old", tmp_path / "new", tmp_path / "backup"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_")}
    env |= {"LOA_MQTT_PASSWORD": password, "LOA_MQTT_PORT": str(port),
            "LOA_MQTT_SERVER_PORT": str(server_port),
            "LOA_MQTT_TLS_PORT": "0"}  # 8883 may be taken on a shared machine  # fmt: skip
    log = (tmp_path / "agent.log").open("wb")
    agent: subprocess.Popen[bytes] | None = None
    try:
        with _serving(
            _settings(old_dir, port=port, server_port=server_port, password=password)
        ) as w:
            org = w.org()
            device_id, uid, device_password = w.device(org)
            zone = w.zone(org, device_ids=[device_id])
            clip_id, sha = _store_clip(w, tmp_path)
            w.approved(**one_off([clip_id], [zone], at=datetime.now(UTC) + timedelta(days=1)))
            broker = cast(TestBroker, SimpleNamespace(host="127.0.0.1", port=port))
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--sim"],
                env=agent_env(broker, uid, device_password, tmp_path / "agent"),
                stdout=log, stderr=log,
            )  # fmt: skip
            _until(lambda: _schedule(w, device_id)["in_sync"], 30, "the agent's schedule")
            version = _schedule(w, device_id)["version"]
            assert version is not None

            # The backup runs while the server, its broker and the agent are all live.
            done = _cli("backup", str(dest), env=env | {"LOA_DATA_DIR": str(old_dir)})
            assert done.returncode == 0, done.stderr
        assert agent.poll() is None  # the agent outlives its server and broker

        manifest = json.loads((dest / "manifest.json").read_text())
        head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
        assert manifest["alembic_revision"] == head and manifest["format"] == 1
        paths = {f["path"] for f in manifest["files"]}
        assert {"database/loa.db", f"clips/dist/{sha[:2]}/{sha}.opus", "mosquitto/passwd",
                "mosquitto/acl", "mosquitto/mosquitto.db"} <= paths  # fmt: skip
        assert all(len(f["sha256"]) == 64 for f in manifest["files"])

        # A used target is refused; a changed file is refused.
        new_dir.mkdir()
        (new_dir / "something").write_text("x")
        refused = _cli("restore", str(dest), "--data-dir", str(new_dir), env=env)
        assert refused.returncode == 2 and "not empty" in refused.stderr
        tampered = tmp_path / "tampered"
        shutil.copytree(dest, tampered)
        clip_copy = tampered / "clips" / "dist" / sha[:2] / f"{sha}.opus"
        clip_copy.write_bytes(clip_copy.read_bytes()[:-1] + b"\0")
        refused = _cli("restore", str(tampered), "--data-dir", str(tmp_path / "t"), env=env)
        assert refused.returncode == 2 and "sha256" in refused.stderr
        shutil.rmtree(new_dir)

        restored = _cli("restore", str(dest), "--data-dir", str(new_dir), env=env)
        assert restored.returncode == 0, restored.stderr
        conf = new_dir / "mosquitto" / "mosquitto.conf"
        assert conf.exists() and str(old_dir) not in conf.read_text()
        started = datetime.now(UTC)
        settings = _settings(new_dir, port=port, server_port=server_port, password=password)
        with _serving(settings, conf) as w2:

            def reconnected() -> bool:
                since = w2.get(f"/devices/{device_id}")["online_since"]
                return since is not None and datetime.fromisoformat(since) > started

            # The same agent process, with the credentials it always had, reconnects ...
            _until(reconnected, 30, "the agent to reconnect to the restored server")
            # ... and holds the schedule version the restored server still publishes.
            _until(lambda: _schedule(w2, device_id)["in_sync"], 10, "the schedule in sync")
            assert _schedule(w2, device_id)["version"] == version
            assert w2.stack.app.state.planner.wait_idle(30)
            assert _schedule(w2, device_id)["version"] == version
            stored = ClipStorage(new_dir / "clips").dist_path(sha)
            assert stored.exists() and w2.client.get("/healthz").json()["mqtt"] == "connected"
        assert agent.poll() is None
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        log.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_database_round_trips_on_every_backend(kind: str, tmp_path: Path) -> None:
    """Backup (SQLite online backup API, or pg_dump) and restore into an empty database."""
    if not has_mosquitto():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    port, server_port, password = free_port(), free_port(), secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_")}
    env |= {"LOA_MQTT_PASSWORD": password}
    with database(kind, tmp_path / "a") as url_a, database(kind, tmp_path / "b") as url_b:
        (tmp_path / "a").mkdir(exist_ok=True)
        old = _settings(tmp_path / "old", port=port, server_port=server_port, password=password)
        old = old.model_copy(update={"database_url": url_a})
        with _serving(old) as w:
            org = w.org("Xã Sao Lưu")
            _id, uid, _pw = w.device(org)
            db_env = env | {"LOA_DATABASE_URL": url_a, "LOA_DATA_DIR": str(old.data_dir)}
            done = _cli("backup", str(tmp_path / "backup"), env=db_env)
            assert done.returncode == 0, done.stderr
            # Written after the backup: must not be in it.
            w.device(org, uid="after-backup")
        manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
        assert manifest["database"]["kind"] == kind
        target = env | {"LOA_DATABASE_URL": url_b}
        restored = _cli("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "new"),
                        env=target)  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        engine = make_engine(url_b)
        with engine.connect() as conn:
            uids = set(conn.scalars(text("SELECT uid FROM devices")).all())
        engine.dispose()
        assert uids == {uid}
        # Restoring twice into the same database is refused, not merged.
        again = _cli("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "new2"),
                     env=target)  # fmt: skip
        assert again.returncode == 2
        assert "not empty" in again.stderr or "exists" in again.stderr


def test_without_pg_dump_a_postgresql_backup_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    settings = ServerSettings(
        data_dir=tmp_path, database_url="postgresql+psycopg://loa:pw@127.0.0.1:1/loa"
    )
    with pytest.raises(BackupError, match="pg_dump is not on PATH: install the PostgreSQL client"):
        write_backup(settings=settings, dest=tmp_path / "backup")
    assert not (tmp_path / "backup" / "manifest.json").exists()
