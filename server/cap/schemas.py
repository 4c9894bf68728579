"""API shapes for CAP: the receipt of an alert posted to Loa."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

# The CAP media types POST /api/v1/cap accepts.
CAP_TYPES = ("application/cap+xml", "application/xml")


class CapReceiptOut(BaseModel):
    """What Loa did with a CAP message: the bulletin it made, updated or cancelled, if any."""

    message_id: int
    sender: str
    identifier: str
    msg_type: str
    status: str
    repeat: bool = Field(
        description="the same (sender, identifier) came before: nothing new was done"
    )
    logged_only: bool = Field(
        description="recorded but not broadcast (status Test, Exercise, System, Draft; Ack, Error)"
    )
    bulletin_id: int | None = Field(
        description="the bulletin this alert became (a Cancel: the one it cancelled)"
    )
    bulletin_status: str | None = None
    level: str | None = None
    valid_until: datetime | None = None
    cancelled_bulletin_ids: list[int] = Field(
        default_factory=list, description="bulletins an Update replaced or a Cancel withdrew"
    )
    test_programme_id: int | None = Field(
        default=None,
        description="a Test or Exercise alert: the programme it became on the test zone only"
        " (LOA_CAP_TEST_ZONE_ID); none when such alerts are only logged",
    )
