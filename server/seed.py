"""Demo data: one province, two communes with villages, zones and 12 clusters."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.devices import service as devices
from server.devices.models import Device
from server.orgs import rules as orgs
from server.orgs.models import OrgUnit, Zone
from server.users import accounts as users
from server.users.models import User

PROVINCE = "Tỉnh Quảng Bình"
COMMUNES = {
    "Xã Bảo Ninh": ("bao-ninh", ["Thôn Hải Thành", "Thôn Cửa Phú", "Thôn Mỹ Cảnh"]),
    "Xã Quảng Phú": ("quang-phu", ["Thôn Phú Thọ", "Thôn Phú Trịch", "Thôn Thanh Bình"]),
}
CLUSTERS_PER_VILLAGE = 2
# (username, role, full name, may run emergencies, org unit name)
DEMO_USERS = (
    ("bientap", "editor", "Nguyễn Thị Lan (biên tập)", False, "Xã Bảo Ninh"),
    ("duyet", "approver", "Trần Văn Hùng (duyệt)", True, "Xã Bảo Ninh"),
    ("trucphat", "operator", "Lê Thị Mai (trực phát)", True, "Xã Bảo Ninh"),
    ("kythuat", "technician", "Phạm Văn Nam (kỹ thuật)", False, PROVINCE),
)


def seed_demo(db: Session) -> bool:
    """Create the demo tree once; False when it already exists."""
    if db.scalar(select(OrgUnit.id).where(OrgUnit.name == PROVINCE)) is not None:
        return False
    province = orgs.create_org_unit(db, name=PROVINCE, kind="province", parent_id=None, code="44")
    for commune_name, (slug, villages) in COMMUNES.items():
        commune = orgs.create_org_unit(
            db, name=commune_name, kind="commune", parent_id=province.id, code=None
        )
        whole = Zone(org_unit_id=commune.id, name="Toàn xã", description="Mọi cụm loa của xã")
        db.add(whole)
        db.flush()
        n = 0
        for village_name in villages:
            village = orgs.create_org_unit(
                db, name=village_name, kind="village", parent_id=commune.id, code=None
            )
            zone = Zone(org_unit_id=village.id, name=f"Cụm loa {village_name}")
            db.add(zone)
            db.flush()
            for _ in range(CLUSTERS_PER_VILLAGE):
                n += 1
                devices.register_device(
                    db,
                    uid=f"{slug}-{n:02d}",
                    name=f"Cụm loa {n:02d} – {village_name}",
                    org_unit_id=village.id,
                    firmware_profile="sim",
                    location=village_name,
                    zone_ids=[zone.id, whole.id],
                )
    return True


def demo_credentials(db: Session) -> dict[str, str]:
    """Fresh passwords for every demo device (demo only: the old ones stop working)."""
    return {
        d.uid: devices.rotate_credentials(db, device=d)
        for d in db.scalars(select(Device).where(Device.revoked_at.is_(None)).order_by(Device.uid))
    }


def seed_demo_users(db: Session, *, password: str) -> list[tuple[str, str, str]]:
    """Demo users for each role (created once); returns (username, role, org unit)."""
    out = []
    for username, role, full_name, emergency, unit_name in DEMO_USERS:
        unit_id = db.scalar(select(OrgUnit.id).where(OrgUnit.name == unit_name))
        if db.scalar(select(User.id).where(User.username == username)) is None:
            users.create_user(
                db,
                username=username,
                password=password,
                role=role,
                org_unit_id=unit_id,
                full_name=full_name,
                can_emergency=emergency,
            )
        out.append((username, role, unit_name))
    return out
