"""`loa-server demo`: start broker, server and simulated agents; stop them all on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from select import select as wait_readable
from typing import TextIO

from sqlalchemy import Engine, func, select

from server.broker.pki import pki_dir
from server.broker.process import BrokerError, free_port, port_open, start_broker, stop_broker
from server.broker.service import apply_broker_config
from server.db import make_engine, make_session_factory, session_scope
from server.demo_selftest import start_commissioning
from server.devices.models import Device
from server.migrate import upgrade
from server.seed import (
    demo_credentials,
    public_codes,
    seed_demo,
    seed_demo_public,
    seed_demo_users,
)
from server.settings import ServerSettings

# The sign-ins are printed once the clusters are online, or after this long at the latest.
SIGNINS_AFTER_S = 30.0
# The e-board's page is on this port when it is free (else on any free one).
EBOARD_PORT = 8090


def _say(message: str) -> None:
    print(f"[loa demo] {message}", flush=True)


def _display_port(taken: set[int]) -> int:
    """8090 for the (first) e-board when nothing listens there, else a free port."""
    if EBOARD_PORT not in taken and not port_open("127.0.0.1", EBOARD_PORT):
        return EBOARD_PORT
    while (port := free_port()) in taken:
        pass
    return port


def _write_agent_configs(
    settings: ServerSettings, creds: dict[str, str], profiles: dict[str, str]
) -> tuple[list[Path], dict[str, int]]:
    """Each device's agent config; returns the paths and each e-board's page port."""
    agents_dir = settings.data_dir / "agents"
    agents_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    boards: dict[str, int] = {}
    for uid, password in creds.items():
        path = agents_dir / f"{uid}.toml"
        # An e-board shows its page on this machine; every other device is a plain cluster.
        profile = "eboard-sim" if profiles.get(uid, "").startswith("eboard") else "sim"
        display = ""
        if profile == "eboard-sim":
            boards[uid] = _display_port(set(boards.values()))
            display = f"display_port = {boards[uid]}\n"
        # Over TLS, as in the field: the broker's certificate is checked against the demo's CA.
        path.write_text(
            f'device_id = "{uid}"\nmqtt_host = "127.0.0.1"\nmqtt_port = {settings.mqtt_tls_port}\n'
            f'tls = true\ntls_ca_file = "{(pki_dir(settings.data_dir) / "ca.pem").resolve()}"\n'
            f'mqtt_password = "{password}"\nfirmware_profile = "{profile}"\n{display}'
            f'data_dir = "{(agents_dir / uid).resolve()}"\n'
        )
        os.chmod(path, 0o600)
        paths.append(path)
    return paths, boards


def _api(base: str, path: str, token: str | None = None, data: bytes | None = None) -> object:
    req = urllib.request.Request(base + path, data=data)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _wait_for_server(base: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {server.returncode}; see its log above"
            )
        try:
            _api(base, "/healthz")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer on {base} within {timeout:.0f}s")


def _count_online(engine: Engine) -> tuple[int, int]:
    """(online, total) devices, read from the database: polling the API every second would
    put an access-log line a second into the output the sign-ins are printed in."""
    with engine.connect() as conn:
        row = conn.execute(
            select(func.count(Device.id).filter(Device.online), func.count(Device.id)).where(
                Device.revoked_at.is_(None)
            )
        ).one()
    return int(row[0]), int(row[1])


def _say_signins(
    base: str, password: str, users: list[tuple[str, str, str]], public: list[str]
) -> None:
    """The block an operator needs: where to open the console and who to sign in as."""
    _say("-" * 60)
    _say(f"console and API: {base}/   (API docs: {base}/docs)")
    _say(f"sign in as: admin / {password}")
    for username, role, unit in users:
        _say(f"        or: {username} / {password}   ({role}, {unit})")
    for line in public:
        _say(line)
    _say("press Enter to show this again; Ctrl-C stops everything this demo started.")
    _say("-" * 60)


def _public_lines(base: str, codes: list[str], boards: dict[str, int]) -> list[str]:
    """Where the public sees the first commune, and each e-board's page (in Vietnamese)."""
    lines = []
    if codes:
        code = urllib.parse.quote(codes[0])
        lines.append(f"trang công khai của xã: {base}/p/{code}")
        lines.append(f"gửi phản ánh, kiến nghị: {base}/p/{code}/phan-anh")
    lines += [f"bảng tin điện tử ({uid}): http://127.0.0.1:{port}/" for uid, port in boards.items()]
    return lines


def _wait_for_enter(stream: TextIO | None, timeout: float) -> str:
    """Wait up to `timeout` s for a line on `stream`: "line", "none", or "eof" (stop asking)."""
    if stream is None or stream.closed:
        time.sleep(timeout)
        return "eof"
    try:
        ready, _, _ = wait_readable([stream], [], [], timeout)
    except (OSError, ValueError):  # not selectable: nobody can press Enter here
        time.sleep(timeout)
        return "eof"
    if not ready:
        return "none"
    return "line" if stream.readline() else "eof"


def _say_live_hint(base: str, token: str, settings: ServerSettings) -> None:
    """How to go live from a file, and where each simulated cluster records what it plays."""
    zones = _api(base, "/api/v1/zones", token)
    first = next(iter(zones), None) if isinstance(zones, list) else None
    if not isinstance(first, dict):
        return
    _say(
        f"live from a file: loa-server live --server {base} --username trucphat "
        f"--zone {first['id']} --input FILE   (zone '{first['name']}'; or the console's Live page)"
    )
    _say(f"each cluster records what it plays in {settings.data_dir / 'agents'}/<uid>/sim/")


def run_demo(*, until_online: bool, agent_count: int) -> int:
    """Run the whole stack in the foreground; returns the exit code."""
    os.environ["LOA_DEMO"] = "true"
    os.environ.setdefault("LOA_COOKIE_SECURE", "false")  # the demo serves plain HTTP
    os.environ.setdefault("LOA_MQTT_TLS_BIND_HOST", "127.0.0.1")  # agents run on this machine
    settings = ServerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if port_open("127.0.0.1", settings.http_port):
        _say(f"port {settings.http_port} is taken; set LOA_HTTP_PORT to a free port and retry")
        return 2
    if port_open(settings.mqtt_bind_host, settings.mqtt_port) or port_open(
        "127.0.0.1", settings.server_mqtt_port
    ):
        port = free_port()
        _say(f"MQTT port {settings.mqtt_port} is taken; using {port} for the demo broker")
        os.environ["LOA_MQTT_PORT"] = str(port)
        os.environ["LOA_MQTT_SERVER_PORT"] = str(free_port())  # the server's own listener
        settings = ServerSettings()
    if port_open("127.0.0.1", settings.mqtt_tls_port):
        # Another broker holds the TLS port: Mosquitto would exit at once ("address in use").
        port = free_port()
        _say(f"MQTT TLS port {settings.mqtt_tls_port} is taken; using {port} for the demo broker")
        os.environ["LOA_MQTT_TLS_PORT"] = str(port)
        settings = ServerSettings()
    if settings.mqtt_tls_port == 0:
        # The demo's agents always use TLS, even where LOA_MQTT_TLS_PORT=0 (the test suite).
        os.environ["LOA_MQTT_TLS_PORT"] = str(free_port())
        settings = ServerSettings()

    engine = make_engine(settings.db_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        created = seed_demo(db)
        added = seed_demo_public(db, settings=settings, now=datetime.now(UTC))
        if created:
            tree = "1 province, 2 communes, 6 villages, 8 zones, 12 clusters"
            _say(f"seeded demo data: {', '.join([tree, *added])}")
        elif added:
            _say(f"added to the demo data: {', '.join(added)}")
        creds = demo_credentials(db)
        profiles = dict(db.execute(select(Device.uid, Device.firmware_profile)).tuples().all())
        codes = public_codes(db)
        demo_users = seed_demo_users(db, password=settings.admin_secret())
    with session_scope(factory) as db:
        conf = apply_broker_config(db, settings=settings)
    engine.dispose()

    children: list[subprocess.Popen[bytes]] = []
    broker = None
    stop = False

    def _on_signal(_signo: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    env = {**os.environ, "LOA_MQTT_PORT": str(settings.mqtt_port)}
    try:
        broker = start_broker(conf, host=settings.mqtt_bind_host, port=settings.mqtt_port)
        _say(
            f"Mosquitto listening on {settings.mqtt_bind_host}:{settings.mqtt_port} (config {conf})"
        )
        _say(
            f"agents connect over TLS to {settings.mqtt_tls_bind_host}:{settings.mqtt_tls_port} "
            f"(CA {pki_dir(settings.data_dir) / 'ca.pem'}, also at /api/v1/broker/ca.pem)"
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--no-migrate"],
            env=env,
            start_new_session=True,
        )
        children.append(server)
        base = f"http://127.0.0.1:{settings.http_port}"
        _wait_for_server(base, server, timeout=60)
        paths, boards = _write_agent_configs(settings, creds, profiles)
        # `agent_count` clusters with horns only, and every e-board: the demo shows them.
        clusters = [p for p in paths if p.stem not in boards][:agent_count]
        agents = [p for p in paths if p.stem in boards or p in clusters]
        public = _public_lines(base, codes, boards)
        for path in agents:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_agent", "run", "--sim", "--config", str(path)],
                    env={"LOA_AGENT_LOG_LEVEL": "WARNING", **env},
                    start_new_session=True,
                )
            )
        admin_password = settings.admin_secret()
        token_body = urllib.parse.urlencode({"username": "admin", "password": admin_password})
        token = _api(base, "/api/v1/auth/token", data=token_body.encode())
        assert isinstance(token, dict)
        _say_live_hint(base, token["access_token"], settings)
        started = time.monotonic()
        reported = -1
        shown = False
        counter = make_engine(settings.db_url)
        keys: TextIO | None = sys.stdin
        agent_procs = dict(zip(children[1:], agents, strict=True))
        commissioning = None
        while not stop:
            online, total = _count_online(counter)
            if online != reported:
                _say(f"{online}/{total} devices online after {time.monotonic() - started:.1f}s")
                reported = online
            settled = online >= min(len(agents), total)
            # The sign-ins come last, once the start-up lines are done (or after a while).
            if not shown and (settled or time.monotonic() - started > SIGNINS_AFTER_S):
                _say_signins(base, admin_password, demo_users, public)
                shown = True
            if until_online and settled:
                return 0
            if settled and commissioning is None:  # baselines, then a dead horn (issue 17)
                commissioning = start_commissioning(
                    base=base, token=token["access_token"], data_dir=settings.data_dir,
                    db_url=settings.db_url, uids=[p.stem for p in agents], say=_say,
                )  # fmt: skip
            if any(c.poll() is not None for c in children[:1]):
                _say("the server stopped unexpectedly")
                return 1
            for proc, path in list(agent_procs.items()):
                if proc.poll() is not None:
                    # Said once; the others keep running, but --until-online can never settle.
                    _say(f"agent {path.stem} stopped (exit code {proc.returncode}); see its log")
                    del agent_procs[proc]
                    if until_online:
                        return 1
            said = _wait_for_enter(keys, 1.0)
            if said == "eof":
                keys = None  # stdin closed (e.g. run from a script): just sleep from now on
            elif said == "line" and not stop:
                _say_signins(base, admin_password, demo_users, public)
        return 0
    except (BrokerError, RuntimeError, urllib.error.URLError) as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        _say("stopping agents, server and broker ...")
        for child in reversed(children):  # agents first: they say goodbye while the broker is up
            if child.poll() is None:
                child.terminate()
        for child in reversed(children):
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if broker is not None:
            stop_broker(broker)
        _say("stopped.")
