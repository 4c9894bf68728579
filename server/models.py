"""Imports every feature's models so metadata and Alembic see all tables."""

from server.access.models import LoginAttempt
from server.audit.models import AuditEntry
from server.bulletins.models import (
    Bulletin,
    BulletinClip,
    BulletinDelivery,
    BulletinTarget,
    RegularSlot,
)
from server.cap.models import CapMessage
from server.clips.models import Clip
from server.db import Base
from server.devices.models import Device, DeviceCommand, TelemetrySample
from server.events.models import OutboxEvent
from server.feedback.models import FeedbackCase, FeedbackCategory, FeedbackStep
from server.live.models import LiveSessionRow
from server.orgs.models import OrgUnit, Zone, zone_devices
from server.planner.models import DeviceSchedule, PlannerState, ZoneClip
from server.plays.models import PlayRecord
from server.programmes.models import (
    Programme,
    ProgrammeClip,
    ProgrammeRelay,
    ProgrammeTransition,
    programme_zones,
)
from server.relay.models import RelayRun, RelaySource
from server.reports.models import DevicePresence, PlayRollup, PlayRollupState, ReportExport
from server.sources.models import Source
from server.users.models import AuthToken, User

__all__ = [
    "AuditEntry",
    "AuthToken",
    "Base",
    "Bulletin",
    "BulletinClip",
    "BulletinDelivery",
    "BulletinTarget",
    "CapMessage",
    "Clip",
    "Device",
    "DeviceCommand",
    "DevicePresence",
    "DeviceSchedule",
    "FeedbackCase",
    "FeedbackCategory",
    "FeedbackStep",
    "LiveSessionRow",
    "LoginAttempt",
    "OrgUnit",
    "OutboxEvent",
    "PlannerState",
    "PlayRecord",
    "PlayRollup",
    "PlayRollupState",
    "Programme",
    "ProgrammeClip",
    "ProgrammeRelay",
    "ProgrammeTransition",
    "RegularSlot",
    "RelayRun",
    "RelaySource",
    "ReportExport",
    "Source",
    "TelemetrySample",
    "User",
    "Zone",
    "ZoneClip",
    "programme_zones",
    "zone_devices",
]
