"""Bounded request types: every number, list, string and time a client sends has a range.

A value out of range is refused with a 422 at the edge; before, a Python int past 64 bits
reached the database driver and came back as an OverflowError (a 500).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_ID = 2**31 - 1  # the largest 32-bit INTEGER, the id column type on PostgreSQL
MAX_OFFSET = 10_000_000
MAX_PAGE = 1000
MAX_TEXT = 10_000  # free text in a request body, unless a field says otherwise
FIRST_YEAR, LAST_YEAR = 1970, 2199  # times outside overflow date arithmetic near year 1 or 9999


def _in_years(value: datetime) -> datetime:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"the year must be from {FIRST_YEAR} to {LAST_YEAR}")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"rows to skip, 0-{MAX_OFFSET}")]
Volume = Annotated[int, Field(ge=0, le=100)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
When = Annotated[datetime, AfterValidator(_in_years)]


def page_limit(maximum: int = MAX_PAGE) -> Any:
    """The `limit` query parameter of a listing: 1 to `maximum` rows."""
    return Query(ge=1, le=maximum, description=f"rows per page, 1-{maximum}")


Limit = Annotated[int, page_limit()]


class RequestBody(BaseModel):
    """Base of every JSON request body: finite numbers only, no string past MAX_TEXT."""

    model_config = ConfigDict(allow_inf_nan=False, str_max_length=MAX_TEXT)
