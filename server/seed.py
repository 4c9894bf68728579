"""Demo data: one province, two communes with villages, zones and 12 clusters; then what the
public channels need (codes, feedback categories, a public bulletin, an e-board)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.actor import load_actor
from server.bulletins import service as bulletins
from server.bulletins.models import APPROVED, Bulletin
from server.bulletins.schemas import BulletinCreate
from server.devices import service as devices
from server.devices.models import Device
from server.feedback.models import FeedbackCategory
from server.orgs import rules as orgs
from server.orgs.models import OrgUnit, Zone
from server.settings import ServerSettings
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
# (name, days to answer) of every demo commune's feedback categories.
FEEDBACK_CATEGORIES = (
    ("Môi trường", 10),
    ("Giao thông", 10),
    ("An ninh trật tự", 5),
    ("Điện, nước", 7),
    ("Khác", 15),
)
# The e-board at the first commune's office: in its whole-commune zone, so it also has horns.
EBOARD_UID = "bao-ninh-bang-tin"
EBOARD_PROFILE = "eboard-sim"
EBOARD_COMMUNE = "Xã Bảo Ninh"
EBOARD_NAME = "Bảng tin điện tử – Trụ sở UBND xã Bảo Ninh"
WHOLE_COMMUNE = "Toàn xã"
# The public bulletin every demo commune shows (sent by the province, read out by TTS).
BULLETIN_TITLE = "Ra quân vệ sinh môi trường cuối tuần"
BULLETIN_TEXT = (
    "Sáng Chủ nhật này, từ 7 giờ, mời bà con các thôn cùng ra quân dọn vệ sinh đường làng, "
    "khơi thông cống rãnh, thu gom rác thải. Mỗi hộ cử ít nhất một người tham gia."
)
BULLETIN_VALID = timedelta(days=30)


def seed_demo(db: Session) -> bool:
    """Create the demo tree once; False when it already exists."""
    if db.scalar(select(OrgUnit.id).where(OrgUnit.name == PROVINCE)) is not None:
        return False
    province = orgs.create_org_unit(db, name=PROVINCE, kind="province", parent_id=None, code="44")
    for commune_name, (slug, villages) in COMMUNES.items():
        commune = orgs.create_org_unit(
            db, name=commune_name, kind="commune", parent_id=province.id, code=None
        )
        whole = Zone(org_unit_id=commune.id, name=WHOLE_COMMUNE, description="Mọi cụm loa của xã")
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


def _communes(db: Session) -> list[OrgUnit]:
    return [
        unit
        for name in COMMUNES
        if (unit := db.scalar(select(OrgUnit).where(OrgUnit.name == name))) is not None
    ]


def _codes(db: Session) -> int:
    """Give each demo commune without a code its slug (the public pages live at /p/{code})."""
    added = 0
    for unit in _communes(db):
        slug = COMMUNES[unit.name][0]
        if unit.code is None and db.scalar(select(OrgUnit.id).where(OrgUnit.code == slug)) is None:
            unit.code = slug
            added += 1
    db.flush()
    return added


def _categories(db: Session) -> int:
    """The feedback categories each demo commune lacks (matched by name)."""
    added = 0
    for unit in _communes(db):
        have = set(
            db.scalars(select(FeedbackCategory.name).where(FeedbackCategory.org_unit_id == unit.id))
        )
        for name, due_days in FEEDBACK_CATEGORIES:
            if name not in have:
                db.add(FeedbackCategory(org_unit_id=unit.id, name=name, due_days=due_days))
                added += 1
    db.flush()
    return added


def _eboard(db: Session) -> int:
    """The demo's e-board (with horns) in the first commune's whole-commune zone, once."""
    if db.scalar(select(Device.id).where(Device.uid == EBOARD_UID)) is not None:
        return 0
    commune = db.scalar(select(OrgUnit).where(OrgUnit.name == EBOARD_COMMUNE))
    if commune is None:
        return 0
    whole = db.scalar(
        select(Zone.id).where(Zone.org_unit_id == commune.id, Zone.name == WHOLE_COMMUNE)
    )
    devices.register_device(
        db,
        uid=EBOARD_UID,
        name=EBOARD_NAME,
        org_unit_id=commune.id,
        firmware_profile=EBOARD_PROFILE,
        location="Trụ sở UBND xã",
        zone_ids=[whole] if whole is not None else [],
    )
    return 1


def _bulletin(db: Session, *, settings: ServerSettings, now: datetime) -> int:
    """A public bulletin from the province to the communes, sent and approved as staff would."""
    province = db.scalar(select(OrgUnit).where(OrgUnit.name == PROVINCE))
    communes = _communes(db)
    if province is None or not communes:
        return 0
    in_force = db.scalar(
        select(Bulletin.id).where(
            Bulletin.title == BULLETIN_TITLE,
            Bulletin.org_unit_id == province.id,
            Bulletin.status == APPROVED,
            Bulletin.valid_until > now,
        )
    )
    if in_force is not None:
        return 0
    users.ensure_admin(db, password=settings.admin_secret())  # before the server's first start
    admin = db.scalar(
        select(User).where(User.role == "admin", User.org_unit_id.is_(None)).order_by(User.id)
    )
    if admin is None:
        return 0
    actor = load_actor(db, user=admin, ip="127.0.0.1", via_cookie=False)
    fields = BulletinCreate(
        title=BULLETIN_TITLE,
        topic="Môi trường",
        text=BULLETIN_TEXT,
        public=True,
        valid_until=now + BULLETIN_VALID,
        target_org_unit_ids=[c.id for c in communes],
    )
    sent = bulletins.create(db, actor=actor, fields=fields, now=now, settings=settings)
    bulletins.approve(db, actor=actor, bulletin_id=sent.id, now=now, settings=settings)
    return 1


def seed_demo_public(db: Session, *, settings: ServerSettings, now: datetime) -> list[str]:
    """Add what the public channels need when missing (older demo data lacks it); says what."""
    counts = (
        (_codes(db), "commune codes"),
        (_categories(db), "feedback categories"),
        (_eboard(db), "e-board"),
        (_bulletin(db, settings=settings, now=now), "public bulletin"),
    )
    return [f"{n} {what}" for n, what in counts if n]


def public_codes(db: Session) -> list[str]:
    """The demo communes' codes, in COMMUNES order (those that have one)."""
    return [unit.code for unit in _communes(db) if unit.code]
