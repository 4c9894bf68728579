"""The planner process role: elected by a database lock, replans on request and daily."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from schedules import LOCAL_TZ_NAME, ScheduleDocument
from server.bulletins.progress import update_deliveries
from server.cap.poll import FeedPoller
from server.db import session_scope
from server.feedback.retention import erase_personal_data
from server.planner.compile import PlanResult, plan_once
from server.planner.lock import PlannerLock
from server.planner.models import PlannerState
from server.programmes.items import RelayTiming
from server.programmes.workflow import advance_lifecycle
from server.reports.export_job import ExportConfig, MonthlyExport
from server.settings import ServerSettings

log = logging.getLogger(__name__)
STATE_ID = 1
PROGRESS_S = 30.0  # how often bulletin deliveries take in proof of play and expiry


class PlanPublisher(Protocol):
    """Where the planner's output goes (the MQTT bridge); both calls are thread-safe."""

    def publish_schedule(self, document: ScheduleDocument) -> None:
        """Publish a device's schedule document, retained."""

    def publish_zone_clip(self, zone_id: int, sha256: str) -> None:
        """Publish a clip's chunks once on the zone's clip topic."""


def note_replan_request(session_factory: sessionmaker[Session], *, now: datetime) -> None:
    """Leave a replan request in the database for the planner in whichever process leads."""
    with session_scope(session_factory) as db:
        state = db.get(PlannerState, STATE_ID)
        if state is None:
            db.add(PlannerState(id=STATE_ID, replan_requested_at=now))
        else:
            state.replan_requested_at = now


class Planner:
    """Compiles and publishes schedules; only the process holding the lock does any of it."""

    def __init__(
        self,
        *,
        engine: Engine,
        session_factory: sessionmaker[Session],
        publisher: PlanPublisher,
        clock: Callable[[], datetime],
        horizon_days: int = 7,
        tick_s: float = 15.0,
        settings: ServerSettings | None = None,
    ) -> None:
        self.session_factory = session_factory
        # CAP feeds (LOA_CAP_FEEDS) are polled by the planner process alone, like progress.
        self.cap_feeds: FeedPoller | None = None
        if settings is not None and settings.cap_feeds:
            self.cap_feeds = FeedPoller(
                session_factory=session_factory, settings=settings, clock=clock
            )
        # The monthly report export (LOA_REPORT_EXPORT_*): the planner process alone runs it.
        export = ExportConfig.from_settings(settings) if settings is not None else None
        self.report_export: MonthlyExport | None = None
        if export is not None:
            self.report_export = MonthlyExport(
                config=export, session_factory=session_factory, clock=clock
            )
        self.settings = settings
        self.publisher = publisher
        self.relay_timing = RelayTiming.from_settings(settings)
        self.clock = clock
        self.horizon_days = horizon_days
        self.tick_s = tick_s
        self.lock = PlannerLock(engine)
        self.runs = 0  # completed passes, for tests and the status page
        self.last_result: PlanResult | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._worker: threading.Thread | None = None
        self._cond = threading.Condition()
        self._requested = 0  # requests made
        self._served = 0  # requests covered by a finished pass
        self._stopping = False
        self._seen_request: datetime | None = None
        self._run_lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        """True while this process holds the planner lock."""
        return self.lock.held

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Try to lead, start the timers (daily replan, lifecycle tick) and the worker."""
        if self.lock.acquire():
            log.info("this process is the planner")
            self.request_replan()
        else:
            log.info("another process is the planner; this one only records replan requests")
        self._worker = threading.Thread(target=self._work, name="loa-planner", daemon=True)
        self._worker.start()
        scheduler = BackgroundScheduler(timezone=LOCAL_TZ_NAME)
        scheduler.add_job(
            self.tick, IntervalTrigger(seconds=self.tick_s), id="tick", coalesce=True,
            max_instances=1,
        )  # fmt: skip
        # Just after local midnight the window moves on by a day.
        scheduler.add_job(
            self.request_replan, CronTrigger(hour=0, minute=1, timezone=LOCAL_TZ_NAME),
            id="daily", coalesce=True, max_instances=1,
        )  # fmt: skip
        scheduler.add_job(
            self.bulletin_progress, IntervalTrigger(seconds=PROGRESS_S), id="bulletin-progress",
            coalesce=True, max_instances=1,
        )  # fmt: skip
        if self.cap_feeds is not None:
            scheduler.add_job(
                self.poll_cap_feeds, IntervalTrigger(seconds=self.cap_feeds.interval_s),
                id="cap-feeds", coalesce=True, max_instances=1,
            )  # fmt: skip
        if self.settings is not None:  # daily: citizens' name and phone after the retention
            scheduler.add_job(
                self.erase_feedback_personal_data, CronTrigger(hour=3, minute=17,
                timezone=LOCAL_TZ_NAME), id="feedback-retention", coalesce=True, max_instances=1,
            )  # fmt: skip
        if self.report_export is not None:  # hourly: due from LOA_REPORT_EXPORT_HOUR on the 1st
            scheduler.add_job(
                self.export_reports, CronTrigger(minute=7, timezone=LOCAL_TZ_NAME),
                id="report-export", coalesce=True, max_instances=1,
            )  # fmt: skip
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop the timers and the worker and give up the lock."""
        if self.report_export is not None:
            self.report_export.stop()  # a backoff in progress ends now
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        self.lock.release()

    # -- requests ---------------------------------------------------------------------------

    def request_replan(self) -> None:
        """Plan again soon (after the caller's commit); coalesces bursts of requests."""
        if not self.is_leader:
            note_replan_request(self.session_factory, now=self.clock())
            return
        with self._cond:
            self._requested += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every request made so far has been served by a finished pass."""
        with self._cond:
            target = self._requested
            return self._cond.wait_for(lambda: self._served >= target, timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._requested > self._served)
                if self._stopping:
                    return
                target = self._requested
            try:
                self.run_once()
            except Exception:  # the database may be briefly away; the next request retries
                log.exception("planning pass failed")
            with self._cond:
                self._served = max(self._served, target)
                self._cond.notify_all()

    # -- the work ---------------------------------------------------------------------------

    def run_once(self, *, now: datetime | None = None) -> PlanResult | None:
        """One planning pass (None when this process is not the planner), then publish."""
        if not self.is_leader:
            return None
        with self._run_lock:
            when = now or self.clock()
            with session_scope(self.session_factory) as db:
                state = db.get(PlannerState, STATE_ID)
                if state is not None:
                    self._seen_request = state.replan_requested_at
                    state.last_run_at = when
                result = plan_once(
                    db, now=when, horizon_days=self.horizon_days, relay_timing=self.relay_timing
                )
            # Only after the commit: what devices receive is always what the database holds.
            # Clips first, so their chunks are on the way before a schedule names them.
            for zone_id, sha in result.zone_clips:
                self.publisher.publish_zone_clip(zone_id, sha)
            for document in result.documents:
                self.publisher.publish_schedule(document)
            self.runs += 1
            self.last_result = result
            log.info(
                "planned %d device(s): %d new version(s), %d zone clip(s), %d status change(s)",
                len(result.documents) + result.unchanged,
                len(result.documents),
                len(result.zone_clips),
                len(result.lifecycle),
            )
            return result

    def bulletin_progress(self) -> None:
        """Bring bulletin deliveries up to date (played, expired); the planner process only."""
        if not self.is_leader:
            return
        try:
            with session_scope(self.session_factory) as db:
                update_deliveries(db, now=self.clock())
        except Exception:  # the database may be briefly away; the next run catches up
            log.exception("bulletin progress failed")

    def poll_cap_feeds(self) -> None:
        """Take in the alerts of the configured CAP feeds; the planner process only."""
        if not self.is_leader or self.cap_feeds is None:
            return
        self.cap_feeds.poll_all()  # logs and counts a failing feed itself, never raises

    def export_reports(self) -> None:
        """Send last month's report where LOA_REPORT_EXPORT_* says, once; planner process only."""
        if not self.is_leader or self.report_export is None:
            return
        try:
            self.report_export.run_due(now=self.clock())
        except Exception:  # the database may be briefly away; the next hourly run catches up
            log.exception("monthly report export failed")

    def erase_feedback_personal_data(self) -> None:
        """Erase name, phone and attachment of cases closed long enough ago; planner only."""
        if not self.is_leader or self.settings is None:
            return
        try:
            with session_scope(self.session_factory) as db:
                erase_personal_data(
                    db, now=self.clock(), days=self.settings.feedback_retention_days,
                    root=self.settings.data_dir / "feedback",
                )  # fmt: skip
        except Exception:  # the database may be briefly away; tomorrow's run catches up
            log.exception("feedback retention failed")

    def tick(self) -> None:
        """Take over if the planner died; move programme statuses; pick up remote requests."""
        try:
            if not self.is_leader:
                if not self.lock.acquire():
                    return
                log.info("this process took over as the planner")
                self.request_replan()
                return
            if not self.lock.still_held():
                return
            # The run lock: a concurrent pass must not record the same transition twice.
            with self._run_lock, session_scope(self.session_factory) as db:
                moves = advance_lifecycle(db, now=self.clock())
                requested = db.scalar(
                    select(PlannerState.replan_requested_at).where(PlannerState.id == STATE_ID)
                )
            remote = requested is not None and (
                self._seen_request is None or requested > self._seen_request
            )
            if moves or remote:
                self.request_replan()
        except Exception:
            log.exception("planner tick failed")
