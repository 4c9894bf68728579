"""Self-test figures for reports: which clusters' latest self-test in a window failed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from server.devices.health import SELFTEST_FAILED
from server.plays.models import DeviceEventRecord
from server.selftest.ingest import NOT_A_RESULT

E = DeviceEventRecord


def failed_devices(
    db: Session, *, device_ids: Select[Any], since: datetime, until: datetime
) -> set[int]:
    """Devices whose latest self-test result in [since, until) was a failure."""
    results = (E.kind == "selftest", E.code.not_in(NOT_A_RESULT), E.at >= since, E.at < until)
    latest = (
        select(E.device_id, func.max(E.at).label("at"))
        .where(*results, E.device_id.in_(device_ids))
        .group_by(E.device_id)
        .subquery()
    )
    rows = db.execute(
        select(E.device_id, E.code)
        .join(latest, and_(E.device_id == latest.c.device_id, E.at == latest.c.at))
        .where(*results)
    ).all()
    return {device_id for device_id, code in rows if code in SELFTEST_FAILED}
