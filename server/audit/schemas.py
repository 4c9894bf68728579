"""API shapes for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditOut(BaseModel):
    """One audit entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    user_id: int | None
    username: str
    ip: str
    action: str
    object_type: str
    object_id: str | None
    org_unit_id: int | None
    summary: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    """One page of audit entries."""

    items: list[AuditOut]
    total: int
