"""The sign-in limit through real HTTP servers: parallel bursts, forged X-Forwarded-For, two apps.

Each server is the app as `loa-server serve` runs it (the same uvicorn settings), on real
sockets; the passwords the server evaluated are counted from the audit log it wrote.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from loa_testkit.stack import database
from server.access.models import LoginAttempt
from server.access.proxies import forwarded_client, parse_trusted_proxies
from server.access.ratelimit import LoginLimiter
from server.app import create_app
from server.audit.models import AuditEntry
from server.broker.process import free_port
from server.cli import http_config
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.settings import ServerSettings
from tests.server.conftest import BACKENDS

ADMIN_PASSWORD = "admin-test-password"
LIMIT = 5


@dataclass
class Served:
    """One running app: its base URL and settings."""

    base: str
    settings: ServerSettings


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    with database(request.param, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@contextmanager
def serve(db_url: str, data_dir: Path, *, trusted_proxies: str = "") -> Iterator[Served]:
    """The app on a free port, served in a thread with the uvicorn settings of `serve`."""
    settings = ServerSettings(
        data_dir=data_dir,
        database_url=db_url,
        http_port=free_port(),
        admin_password=ADMIN_PASSWORD,
        mqtt_password=secrets.token_urlsafe(8),
        manage_broker=False,
        login_max_failures=LIMIT,
        login_window_s=300,
        trusted_proxies=trusted_proxies,
    )
    server = uvicorn.Server(
        http_config(create_app(settings, with_mqtt=False), settings, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{settings.http_port}", settings)
    finally:
        server.should_exit = True
        thread.join(15)


def attempt(base: str, password: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One sign-in as admin over a fresh connection."""
    return httpx.post(
        f"{base}/api/v1/auth/token",
        data={"username": "admin", "password": password},
        headers=headers or {},
        timeout=120,
    )


def burst(bases: list[str], count: int) -> Counter[int]:
    """`count` wrong passwords at once (threads released together), spread over the servers."""
    gate = threading.Barrier(count)
    codes: list[int] = []

    def one(i: int) -> None:
        gate.wait()
        codes.append(attempt(bases[i % len(bases)], f"wrong-{i}").status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return Counter(codes)


def evaluated(db_url: str) -> list[str]:
    """The client address of every failed sign-in the servers evaluated (from the audit log)."""
    engine = make_engine(db_url)
    try:
        with session_scope(make_session_factory(engine)) as db:
            query = select(AuditEntry.ip).where(AuditEntry.action == "auth.login_failed")
            return list(db.scalars(query.order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def until_refused(base: str, headers: list[dict[str, str]] | None = None) -> int:
    """Wrong passwords one after another until the first 429; how many were answered 401."""
    answered = 0
    for i in range(3 * LIMIT):
        r = attempt(base, f"again-{i}", (headers or [{}])[i % len(headers or [{}])])
        if r.status_code == 429:
            return answered
        assert r.status_code == 401, r.text
        answered += 1
    raise AssertionError(f"no 429 after {answered} wrong passwords")


def test_parallel_attempts_evaluate_no_more_passwords_than_the_limit(
    db_url: str, tmp_path: Path
) -> None:
    with serve(db_url, tmp_path / "data") as app:
        codes = burst([app.base], 40)
        print(f"40 parallel wrong passwords: {dict(codes)}")
        assert sum(codes.values()) == 40 and set(codes) <= {401, 429}, codes
        assert codes[401] <= LIMIT, f"{codes[401]} passwords evaluated against a limit of {LIMIT}"
        assert len(evaluated(db_url)) == codes[401]
        # The burst's failures count: one after another, the limit is reached at exactly 5.
        assert codes[401] + until_refused(app.base) == LIMIT
        assert len(evaluated(db_url)) == LIMIT
        r = attempt(app.base, ADMIN_PASSWORD)  # the right password too, while limited
        assert r.status_code == 429
        assert "Đăng nhập sai quá nhiều lần" in r.json()["detail"]
        assert 1 <= int(r.headers["Retry-After"]) <= 300


def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    db_url: str, tmp_path: Path
) -> None:
    with serve(db_url, tmp_path / "data") as app:
        rotating = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(1, 20)]
        assert until_refused(app.base, rotating) == LIMIT
        assert evaluated(db_url) == ["127.0.0.1"] * LIMIT  # the peer, not the header


def test_a_trusted_proxy_forwards_the_client_address(db_url: str, tmp_path: Path) -> None:
    with serve(db_url, tmp_path / "data", trusted_proxies="127.0.0.1, 10.0.0.0/8") as app:
        # Left of the hop our proxy wrote, the client may write anything: it does not help.
        forged = [
            {"X-Forwarded-For": f"198.18.0.{i}, 198.51.100.7, 10.1.2.3"} for i in range(1, 20)
        ]
        assert until_refused(app.base, forged) == LIMIT
        assert evaluated(db_url) == ["198.51.100.7"] * LIMIT
        # Another client behind the same proxy is not held back.
        other = attempt(app.base, "wrong", {"X-Forwarded-For": "198.51.100.8"})
        assert other.status_code == 401
        assert evaluated(db_url)[-1] == "198.51.100.8"


def test_the_limit_holds_across_two_apps_on_one_database(db_url: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(serve(db_url, tmp_path / "a"))
        second = stack.enter_context(serve(db_url, tmp_path / "b"))
        codes = burst([first.base, second.base], 30)
        print(f"30 parallel wrong passwords over two apps: {dict(codes)}")
        assert codes[401] <= LIMIT, f"{codes[401]} evaluated across two apps"
        assert codes[401] + until_refused(second.base) == LIMIT
        assert attempt(first.base, "wrong").status_code == 429
        assert attempt(second.base, ADMIN_PASSWORD).status_code == 429
        assert len(evaluated(db_url)) == LIMIT


def test_the_window_slides_and_a_success_clears_it(db_url: str) -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=lambda: now[0], prune_every_s=0)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    try:
        for _ in range(3):
            assert limiter.begin(factory, username="An", ip="1.2.3.4") == 0  # fails: row stays
            now[0] += 10
        assert limiter.begin(factory, username="an", ip="1.2.3.4") == 30  # username any case
        assert limiter.recent(factory, username="an", ip="1.2.3.4") == 3  # refused: not kept
        assert limiter.begin(factory, username="an", ip="5.6.7.8") == 0
        now[0] += 30  # the first failure leaves the window
        assert limiter.begin(factory, username="an", ip="1.2.3.4") == 0
        assert limiter.begin(factory, username="an", ip="1.2.3.4") == 10
        limiter.succeeded(factory, username="an", ip="1.2.3.4")
        assert limiter.begin(factory, username="an", ip="1.2.3.4") == 0
        now[0] += 61  # everything has left the window: the prune empties the table
        limiter.begin(factory, username="other", ip="1.2.3.4")
        with session_scope(factory) as db:
            assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 1
    finally:
        engine.dispose()


def test_forwarded_for_is_read_right_to_left_up_to_the_first_untrusted_hop() -> None:
    trusted = parse_trusted_proxies("10.0.0.0/8 192.0.2.1,2001:db8::/32")
    assert forwarded_client("127.0.0.1", ["6.6.6.6"], trusted) == "127.0.0.1"
    assert forwarded_client("192.0.2.1", ["1.1.1.1, 5.5.5.5, 10.0.0.9"], trusted) == "5.5.5.5"
    assert forwarded_client("192.0.2.1", ["1.1.1.1", "5.5.5.5"], trusted) == "5.5.5.5"
    assert forwarded_client("2001:db8::1", ["2001:DB8:0::7, 2a00::1"], trusted) == "2a00::1"
    assert forwarded_client("192.0.2.1", ["not-an-ip"], trusted) == "192.0.2.1"
    assert forwarded_client("192.0.2.1", [], trusted) == "192.0.2.1"
    assert forwarded_client("192.0.2.1", ["10.0.0.2, 10.0.0.3"], trusted) == "10.0.0.2"
    with pytest.raises(ValueError, match="LOA_TRUSTED_PROXIES"):
        parse_trusted_proxies("10.0.0.0/33")
