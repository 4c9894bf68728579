"""Request and answer shapes of citizen feedback; the public ones never carry name or phone."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from server.bounds import Id, RequestBody, When

MAX_CONTENT = 5000
MAX_ZONES = 200  # zones one broadcast answer may target
# Vietnamese numbers: mobiles 0[35789]x xxx xxxx, landlines 02xx xxx xxxx; +84 or 84 for 0.
_PHONE = re.compile(r"(?:\+84|84|0)([35789]\d{8}|2\d{9})")


def normal_phone(value: str) -> str:
    """A Vietnamese phone number as 0XXXXXXXXX ('' stays ''); ValueError if it is not one."""
    compact = re.sub(r"[\s.\-()]", "", value)
    if not compact:
        return ""
    found = _PHONE.fullmatch(compact)
    if found is None:
        raise ValueError("not a Vietnamese phone number (e.g. 0912 345 678)")
    return "0" + found.group(1)


def _stripped(value: str) -> str:
    return value.strip()


Phone = Annotated[str, Field(max_length=32), AfterValidator(normal_phone)]
Text = Annotated[str, AfterValidator(_stripped)]


class FeedbackIn(RequestBody):
    """A citizen's submission (JSON, or the fields of a multipart form)."""

    org_unit_code: Annotated[str, Field(min_length=1, max_length=32)]
    category: Annotated[Text, Field(max_length=100)] = ""
    content: Annotated[Text, Field(min_length=1, max_length=MAX_CONTENT)]
    name: Annotated[Text, Field(max_length=200)] = ""
    phone: Phone = ""
    # The honeypot: hidden from people by CSS; a filled one is a robot (see service.submit).
    website: Annotated[str, Field(max_length=500)] = ""


class SubmittedOut(BaseModel):
    """What the citizen keeps."""

    tracking_code: str
    status: str
    status_label: str
    due_at: datetime


class PublicCaseOut(BaseModel):
    """A case as anyone holding its tracking code sees it: no name, phone or attachment."""

    tracking_code: str
    status: str
    status_label: str
    category: str
    created_at: datetime
    due_at: datetime
    answer: str | None
    answered_at: datetime | None


class StepOut(BaseModel):
    """One step staff took."""

    action: str
    user_id: int | None
    username: str
    to_org_unit_id: int | None
    note: str
    at: datetime


class CaseOut(BaseModel):
    """A case in the staff queue."""

    id: int
    tracking_code: str
    org_unit_id: int
    received_by_unit_id: int
    category_id: int | None
    category: str
    content: str
    status: str
    status_label: str
    assigned_to: int | None
    created_at: datetime
    due_at: datetime
    overdue: bool
    answered_at: datetime | None
    closed_at: datetime | None


class CaseDetailOut(CaseOut):
    """One case for its commune's staff: with the citizen's name and phone, and the steps."""

    name: str
    phone: str
    personal_erased: bool
    answer: str
    answer_public: bool
    programme_id: int | None  # the programme reading the answer on the horns, if any
    attachment_type: str | None
    attachment_size: int | None
    steps: list[StepOut]


class CasePage(BaseModel):
    """One page of the queue and the counts the console shows."""

    items: list[CaseOut]
    total: int
    new_count: int
    overdue_count: int


class AssignIn(RequestBody):
    """Give the case to a user of one's units."""

    user_id: Id
    note: Annotated[str, Field(max_length=1000)] = ""


class AnswerIn(RequestBody):
    """The answer, and whether the citizen (and anyone with the code) may read it."""

    answer: Annotated[Text, Field(min_length=1, max_length=MAX_CONTENT)]
    publish: bool = False
    # Also read it on the horns: a normal programme of the case's unit, submitted for approval.
    broadcast: bool = False
    zone_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_ZONES)] | None = None
    broadcast_at: When | None = None

    @model_validator(mode="after")
    def _broadcast_fields(self) -> AnswerIn:
        if not self.broadcast and (self.zone_ids is not None or self.broadcast_at is not None):
            raise ValueError("zone_ids and broadcast_at need broadcast: true")
        return self


class ForwardIn(RequestBody):
    """Hand the case to another unit of one's subtree."""

    org_unit_id: Id
    note: Annotated[str, Field(max_length=1000)] = ""


class CloseIn(RequestBody):
    """Close the case."""

    note: Annotated[str, Field(max_length=1000)] = ""


DueDays = Annotated[int, Field(ge=1, le=90)]


class CategoryIn(RequestBody):
    """A new category of a commune."""

    org_unit_id: Id
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    due_days: DueDays = 10
    enabled: bool = True


class CategoryUpdate(RequestBody):
    """Rename, re-time, enable or disable a category."""

    name: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    due_days: DueDays | None = None
    enabled: bool | None = None


class CategoryOut(BaseModel):
    """A category."""

    id: int
    org_unit_id: int
    name: str
    due_days: int
    enabled: bool
