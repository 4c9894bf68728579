"""Imports every feature's models so metadata and Alembic see all tables."""

from server.clips.models import Clip
from server.db import Base
from server.devices.models import Device
from server.orgs.models import OrgUnit, Zone, zone_devices
from server.users.models import AuthToken, User

__all__ = ["AuthToken", "Base", "Clip", "Device", "OrgUnit", "User", "Zone", "zone_devices"]
