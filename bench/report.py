"""Benchmark: the province summary report over one year on PostgreSQL.

Builds a fresh database (migrated to head) holding one province of 300 communes and 5,000
devices, each commune's programmes and the proof of play of one year (one row per device
per item, about 10 million rows, loaded with COPY), a presence history and bulletin
deliveries; then times `server.reports.summary.summary` for the province and the year.
Before timing, the monthly proof-of-play sums (server/reports/rollup.py) are built once, as
the first report after the upgrade does (`rollup_build_s`); every timed run then refreshes
them (nothing new) and reads them. Prints one JSON line:
{"bench":"report", ..., "seconds": best run, "first_seconds": first run, ...}.
The database is dropped at the end (--keep keeps it for a second look).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import select

from schedules import occurrences
from server.access.actor import Actor
from server.db import make_engine, make_session_factory
from server.migrate import upgrade
from server.reports import periods, rollup, summary
from server.users.models import User

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
YEAR = 2031
RULES = [  # every commune's own and placed programmes, local wall times
    ("FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0", "normal", False),
    ("FREQ=DAILY;BYHOUR=5;BYMINUTE=30;BYSECOND=0", "normal", True),  # a bulletin from above
    ("FREQ=DAILY;BYHOUR=11;BYMINUTE=0;BYSECOND=0", "normal", False),
    ("FREQ=DAILY;BYHOUR=17;BYMINUTE=0;BYSECOND=0", "normal", False),
    ("FREQ=DAILY;BYHOUR=17;BYMINUTE=30;BYSECOND=0", "priority", True),
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=19;BYMINUTE=0;BYSECOND=0", "normal", False),
]
EMERGENCIES_PER_YEAR = 4
TS = "%Y-%m-%d %H:%M:%S+00"
PLAY_COLUMNS = (
    "device_id, seq, item_id, programme_id, priority, planned_start, actual_start, ended_at, "
    "outcome, reason, received_at"
)
PLAY_INDEXES = {  # dropped during the load, rebuilt after (as a restore would)
    "ix_play_events_planned_start": "CREATE INDEX {} ON play_events (planned_start)",
    "ix_play_events_programme_id": "CREATE INDEX {} ON play_events (programme_id)",
    "ix_play_events_emergency": (
        "CREATE INDEX {} ON play_events (planned_start) WHERE priority = 'emergency'"
    ),
}


def _copy(cur: psycopg.Cursor[Any], table: str, columns: str, lines: Iterator[str]) -> int:
    """COPY text lines into a table in chunks; returns the row count."""
    n = 0
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buf = io.StringIO()
        for line in lines:
            buf.write(line)
            n += 1
            if n % 200_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())
    return n


def _ts(value: datetime) -> str:
    return value.strftime(TS)


def _load(
    conn: psycopg.Connection[Any], *, communes: int, devices: int, seed: int
) -> dict[str, int]:
    """The province, its communes, devices, programmes, plays, presence and deliveries."""
    rng = random.Random(seed)
    since = datetime(YEAR - 1, 12, 31, 17, 0, tzinfo=UTC)
    until = datetime(YEAR, 12, 31, 17, 0, tzinfo=UTC)
    created = _ts(since - timedelta(days=30))
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO org_units (id, parent_id, name, kind, created_at) "
        "VALUES (1, NULL, 'Tỉnh Thử', 'province', now())"
    )
    cur.execute(
        "INSERT INTO org_units (id, parent_id, name, kind, created_at) "
        "SELECT 1 + g, 1, 'Xã ' || g, 'commune', now() FROM generate_series(1, %s) g",
        (communes,),
    )
    commune_of = {d: 2 + d % communes for d in range(1, devices + 1)}
    _copy(
        cur,
        "devices",
        "id, uid, name, org_unit_id, firmware_profile, location, mqtt_password_hash, created_at, "
        "online, state_version, volume",
        (
            f"{d}\tdev-{d:05d}\tCụm {d}\t{commune_of[d]}\tsim\t\tx\t{created}\tf\t0\t70\n"
            for d in range(1, devices + 1)
        ),
    )
    cur.execute(
        "INSERT INTO zones (id, org_unit_id, name, description, created_at) "
        "SELECT id, id, 'Toàn xã', '', now() FROM org_units WHERE kind = 'commune'"
    )
    cur.execute("INSERT INTO zone_devices (zone_id, device_id) SELECT org_unit_id, id FROM devices")
    members: dict[int, list[int]] = {}
    for d, c in commune_of.items():
        members.setdefault(c, []).append(d)
    # Programmes: the same rules in every commune (occurrences computed once per rule).
    starts = {
        rule: occurrences(
            rrule=rule, dtstart_local=datetime(YEAR, 1, 1), window_start=since, window_end=until
        )
        for rule, _, _ in RULES
    }
    cur.execute(  # 100 bulletins from the province, every second one priority
        "INSERT INTO bulletins (id, title, topic, level, text, essential, valid_from, "
        "valid_until, status, rejection_reason, org_unit_id, created_at, updated_at) "
        "SELECT g, 'Bản tin ' || g, CASE WHEN mod(g, 2) = 0 THEN 'Thiên tai' ELSE 'Thời sự' END, "
        "CASE WHEN mod(g, 2) = 0 THEN 'priority' ELSE 'normal' END, '', mod(g, 2) = 0, %s, %s, "
        "'approved', '', 1, now(), now() FROM generate_series(1, 100) g",
        (since, until),
    )
    programmes: list[tuple[int, int, str, str | None, list[datetime]]] = []
    pid = 0
    for commune in range(2, communes + 2):
        for rule, priority, from_above in RULES:
            pid += 1
            bulletin = (2 if priority == "priority" else 1) if from_above else None
            programmes.append((pid, commune, priority, rule, starts[rule]))
            cur.execute(
                "INSERT INTO programmes (id, title, description, priority, status, rrule, dtstart, "
                "org_unit_id, rejection_reason, bulletin_id, created_at, updated_at) VALUES "
                "(%s, %s, '', %s, 'active', %s, %s, %s, '', %s, now(), now())",
                (pid, f"CT {pid}", priority, rule, datetime(YEAR, 1, 1), commune, bulletin),
            )
        for _ in range(EMERGENCIES_PER_YEAR):
            pid += 1
            at = since + timedelta(seconds=rng.randrange(int((until - since).total_seconds())))
            programmes.append((pid, commune, "emergency", None, [at]))
            cur.execute(
                "INSERT INTO programmes (id, title, description, priority, status, start, "
                "org_unit_id, rejection_reason, created_at, updated_at) VALUES "
                "(%s, %s, '', 'emergency', 'ended', %s, %s, '', now(), now())",
                (pid, f"Khẩn cấp {pid}", at, commune),
            )
    cur.execute(
        "INSERT INTO programme_zones (programme_id, zone_id) SELECT id, org_unit_id FROM programmes"
    )
    for name in PLAY_INDEXES:
        cur.execute(f"DROP INDEX {name}")
    seqs = dict.fromkeys(commune_of, 0)

    def plays() -> Iterator[str]:
        for pid, commune, priority, _, when in programmes:
            devs = members.get(commune, [])
            for start in when:
                item = f"{pid}@{start:%Y%m%dT%H%M%SZ}"
                planned = _ts(start)
                for d in devs:
                    seqs[d] += 1
                    roll = rng.random()
                    if roll < 0.03:
                        yield (
                            f"{d}\t{seqs[d]}\t{item}\t{pid}\t{priority}\t{planned}\t\\N\t\\N\t"
                            f"missed\tits start passed while the agent was not running\t{planned}\n"
                        )
                        continue
                    late = 0.2 if roll < 0.95 else 2.5
                    actual = start + timedelta(seconds=late)
                    ended = _ts(actual + timedelta(seconds=300))
                    yield (
                        f"{d}\t{seqs[d]}\t{item}\t{pid}\t{priority}\t{planned}\t{actual.strftime(TS)}\t"
                        f"{ended}\tplayed\t\t{ended}\n"
                    )

    rows = _copy(cur, "play_events", PLAY_COLUMNS, plays())
    for name, ddl in PLAY_INDEXES.items():
        cur.execute(ddl.format(name))

    # Presence: every device comes online before the year and drops out ~2 times a month.
    def presence() -> Iterator[str]:
        for d in commune_of:
            at = since - timedelta(days=1)
            yield f"{d}\tt\t{_ts(at)}\n"
            while True:
                at += timedelta(hours=rng.expovariate(1 / 360))
                if at >= until:
                    break
                yield f"{d}\tf\t{_ts(at)}\n"
                at += timedelta(minutes=rng.expovariate(1 / 90))
                yield f"{d}\tt\t{_ts(at)}\n"

    transitions = _copy(cur, "device_presence", "device_id, online, at", presence())
    statuses = ["played"] * 6 + ["declined", "expired", "scheduled", "delivered"]
    deliveries = _copy(
        cur,
        "bulletin_deliveries",
        "bulletin_id, org_unit_id, status, status_at, decline_reason, warning, "
        "clusters_targeted, clusters_played, created_at",
        (
            f"{1 + n}\t{c}\t{rng.choice(statuses)}\t{_ts(since)}\t\t\t{size}\t"
            f"{rng.randint(0, size)}\t{_ts(since + timedelta(days=3 * n))}\n"
            for c, size in ((c, len(members.get(c, []))) for c in range(2, communes + 2))
            for n in range(100)
        ),
    )
    conn.commit()
    return {
        "play_rows": rows,
        "presence_rows": transitions,
        "deliveries": deliveries,
        "programmes": pid,
    }


def run(*, communes: int, devices: int, seed: int, repeat: int, keep: bool) -> dict[str, Any]:
    """Load, vacuum, time the summary `repeat` times; the database is dropped unless keep."""
    name = f"loa_bench_report_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        began = time.perf_counter()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            counts = _load(conn, communes=communes, devices=devices, seed=seed)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        load_s = time.perf_counter() - began
        factory = make_session_factory(engine)
        period = periods.parse_period(str(YEAR))
        timings: list[float] = []
        with factory() as db:
            admin_user = db.scalar(select(User).where(User.org_unit_id.is_(None)).limit(1))
            actor = Actor(
                user=admin_user or User(username="bench", role="admin"),
                org_ids=None,
                ancestor_org_ids=frozenset(),
                ip="127.0.0.1",
            )
            now = datetime(YEAR + 1, 1, 15, tzinfo=UTC)
            t0 = time.perf_counter()
            rollup.refresh(db, now=now)  # the first report after the upgrade sums every row
            db.commit()
            rollup_s = time.perf_counter() - t0
            for _ in range(repeat):
                t0 = time.perf_counter()
                report = summary.summary(db, actor=actor, org_unit_id=1, period=period, now=now)
                body = report.model_dump_json()
                timings.append(time.perf_counter() - t0)
        total = report.total
        return {
            "bench": "report",
            "communes": communes,
            "devices": devices,
            **counts,
            "period": period.label,
            "seconds": round(min(timings), 3),
            "first_seconds": round(timings[0], 3),
            "runs": len(timings),
            "target_s": 2.0,
            "json_bytes": len(body),
            "planned": total.programmes.planned,
            "played": total.programmes.played,
            "online_share": total.availability.online_share,
            "rollup_build_s": round(rollup_s, 1),
            "load_s": round(load_s, 1),
        }
    finally:
        engine.dispose()
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--communes", type=int, default=300)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    result = run(
        communes=args.communes,
        devices=args.devices,
        seed=args.seed,
        repeat=args.repeat,
        keep=args.keep,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
