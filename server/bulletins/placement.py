"""Where a delivered bulletin plays without the commune acting: priority and emergency."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.bulletins.models import Bulletin, BulletinDelivery


def place(
    db: Session, *, bulletin: Bulletin, deliveries: list[BulletinDelivery], now: datetime
) -> None:
    """Priority: the head of each commune's next regular slot; emergency: at once. Normal: none."""
    # Filled in by the placement work (issue 14); normal bulletins wait for the commune.
    return None
