"""The optional monthly export: last month's summary JSON to a folder and/or a URL, recorded.

From `hour` o'clock on the 1st of each month (local time) the planner process builds the
previous month's summary of one org unit (the JSON of docs/reports.md) and delivers it to each
configured destination: a file written atomically (temp file, fsync, rename) and/or an HTTP
POST. Each delivery is retried with a doubling delay; each run is a row of `report_exports`.
The job is idempotent: a destination that has the month is never sent it again, and one that
keeps failing is tried again at the next hourly check, up to MAX_RUNS runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from schedules import to_local_wall
from server.access.actor import Actor
from server.db import session_scope
from server.domain import DomainError
from server.reports import periods
from server.reports.models import ReportExport
from server.reports.summary import summary
from server.settings import SettingsError
from server.users.models import User

if TYPE_CHECKING:
    from server.settings import ServerSettings

log = logging.getLogger(__name__)
MAX_RUNS = 24  # failed runs of one month to one destination before the job gives up on it
MAX_DELAY_S = 600.0
SENT, FAILED = "sent", "failed"


class DeliveryFailed(Exception):
    """One attempt did not deliver; the message goes into the record."""


@dataclass(frozen=True)
class ExportConfig:
    """What to export where (LOA_REPORT_EXPORT_*); None from from_settings when off."""

    org_unit_id: int
    folder: Path | None = None
    url: str | None = None
    token: str | None = None
    hour: int = 2
    attempts: int = 5
    backoff_s: float = 30.0
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ExportConfig | None:
        """The job's settings, None when no destination is set; SettingsError when incomplete."""
        folder, url = settings.report_export_dir, settings.report_export_url
        if folder is None and not url:
            return None
        if settings.report_export_org_unit_id is None:
            raise SettingsError(
                "LOA_REPORT_EXPORT_ORG_UNIT_ID is not set: name the org unit whose monthly "
                "report LOA_REPORT_EXPORT_DIR / LOA_REPORT_EXPORT_URL receive."
            )
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise SettingsError("LOA_REPORT_EXPORT_URL must be an http:// or https:// URL.")
        token = settings.report_export_token
        return cls(
            org_unit_id=settings.report_export_org_unit_id,
            folder=folder,
            url=url or None,
            token=token.get_secret_value() if token is not None else None,
            hour=settings.report_export_hour,
            attempts=settings.report_export_attempts,
            backoff_s=settings.report_export_backoff_s,
            timeout_s=settings.report_export_timeout_s,
        )

    def file_name(self, period: str) -> str:
        """The export's name in the folder (one file per unit and month)."""
        return f"loa-report-{self.org_unit_id}-{period}.json"

    def destinations(self) -> list[tuple[str, str]]:
        """(target, destination as recorded): the folder's path, the URL without its query."""
        out = []
        if self.folder is not None:
            out.append(("folder", str(self.folder.resolve())))
        if self.url:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            out.append(("url", parts._replace(netloc=netloc, query="", fragment="").geturl()))
        return out


def due_period(now: datetime, hour: int) -> str:
    """The month to export at `now`: the previous local month, once the 1st reached `hour`."""
    shifted = to_local_wall(now.astimezone(UTC)) - timedelta(hours=hour)
    first = shifted.replace(day=1)
    previous = first - timedelta(days=1)
    return f"{previous:%Y-%m}"


def figures_digest(body: bytes) -> str:
    """SHA-256 of an export without its generated_at: equal figures, equal digest."""
    data = json.loads(body)
    data.pop("generated_at", None)
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def system_actor() -> Actor:
    """A caller that reaches the whole tree, for the server's own reports (never stored)."""
    user = User(username="system:report-export", password_hash="!", role="admin")
    return Actor(user=user, org_ids=None, ancestor_org_ids=frozenset(), ip="")


def write_atomically(folder: Path, name: str, body: bytes) -> Path:
    """Write body to folder/name so a reader sees the old file or the whole new one."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / name


class MonthlyExport:
    """Runs the export when due; the planner calls run_due from its hourly timer."""

    def __init__(
        self,
        *,
        config: ExportConfig,
        session_factory: sessionmaker[Session],
        clock: Callable[[], datetime],
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.clock = clock
        self._stop = threading.Event()
        # Waiting on an event, so stopping the server cuts a backoff short.
        self.sleep = sleep or self._stop.wait

    def stop(self) -> None:
        """Cut short any backoff in progress (the current attempt still finishes)."""
        self._stop.set()

    def _pending(self, db: Session, period: str) -> list[tuple[str, str]]:
        pending = []
        for target, destination in self.config.destinations():
            runs = dict(
                db.execute(
                    select(ReportExport.status, func.count())
                    .where(
                        ReportExport.period == period,
                        ReportExport.org_unit_id == self.config.org_unit_id,
                        ReportExport.target == target,
                        ReportExport.destination == destination,
                    )
                    .group_by(ReportExport.status)
                ).all()
            )
            if runs.get(SENT):
                continue
            if runs.get(FAILED, 0) >= MAX_RUNS:
                log.warning("report export of %s to %s: gave up after %d runs", period,
                            destination, MAX_RUNS)  # fmt: skip
                continue
            pending.append((target, destination))
        return pending

    def run_due(self, *, now: datetime | None = None) -> list[ReportExport]:
        """Export the due month to every destination that lacks it; returns the new records."""
        now = now or self.clock()
        period = due_period(now, self.config.hour)
        with session_scope(self.session_factory) as db:
            pending = self._pending(db, period)
        if not pending:
            return []
        try:
            body = self.build(period=period, now=now)
            error = ""
        except DomainError as exc:  # the org unit is gone: recorded, tried again next hour
            body, error = b"", str(exc.detail)
        records = []
        for target, destination in pending:
            started = self.clock()
            if error:
                status, attempts, last_error = FAILED, 0, error
            else:
                status, attempts, last_error = self._deliver(target, period, body)
            record = ReportExport(
                period=period, org_unit_id=self.config.org_unit_id, target=target,
                destination=destination, status=status, attempts=attempts,
                size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(),
                error=last_error[:500], started_at=started, finished_at=self.clock(),
            )  # fmt: skip
            with session_scope(self.session_factory) as db:
                db.add(record)
                db.flush()
                db.expunge(record)
            log.info("report export %s of unit %d to %s: %s after %d attempt(s)", period,
                     self.config.org_unit_id, destination, status, attempts)  # fmt: skip
            records.append(record)
        return records

    def build(self, *, period: str, now: datetime) -> bytes:
        """The month's summary as the documented JSON (UTF-8)."""
        with session_scope(self.session_factory) as db:
            report = summary(
                db,
                actor=system_actor(),
                org_unit_id=self.config.org_unit_id,
                period=periods.parse_period(period),
                now=now,
            )
            data = report.model_dump(mode="json")
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _deliver(self, target: str, period: str, body: bytes) -> tuple[str, int, str]:
        """Up to `attempts` tries with a doubling delay: (status, attempts made, last error)."""
        error = ""
        for attempt in range(1, self.config.attempts + 1):
            try:
                if target == "folder":
                    assert self.config.folder is not None
                    write_atomically(self.config.folder, self.config.file_name(period), body)
                else:
                    self._post(period, body)
                return SENT, attempt, ""
            except (DeliveryFailed, OSError) as exc:
                error = str(exc) or type(exc).__name__
                log.warning("report export %s to %s, attempt %d: %s", period, target, attempt,
                            error)  # fmt: skip
            if attempt < self.config.attempts:
                delay = min(self.config.backoff_s * 2 ** (attempt - 1), MAX_DELAY_S)
                self.sleep(delay)
                if self._stop.is_set():
                    return FAILED, attempt, error + " (stopped)"
        return FAILED, self.config.attempts, error

    def _post(self, period: str, body: bytes) -> None:
        assert self.config.url is not None
        digest = figures_digest(body)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            # The same month's same figures carry the same key in every run (a POST that
            # arrived but whose answer was lost is sent again): a receiver can drop repeats.
            "Idempotency-Key": f"loa-report-{self.config.org_unit_id}-{period}-{digest[:16]}",
        }
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        try:
            with httpx.Client(timeout=self.config.timeout_s, follow_redirects=False) as client:
                answer = client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= answer.status_code < 300:
            raise DeliveryFailed(f"HTTP {answer.status_code}: {answer.text[:200]}")
