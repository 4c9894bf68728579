"""The one error a use case raises: an HTTP status and a sentence for the operator."""

from __future__ import annotations

from fastapi import HTTPException


class DomainError(HTTPException):
    """A request that cannot be carried out, and why.

    An HTTPException on purpose: the JSON handler and the console's error page already
    render it, so a service raises it and a route never translates errors.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status_code=status, detail=detail)

    @property
    def status(self) -> int:
        """The HTTP status (422 invalid, 403 not allowed, 404 missing, 409 conflict)."""
        return self.status_code


def not_found(what: str, object_id: object) -> DomainError:
    """The one answer for 'missing' and 'outside your org units', so existence never leaks."""
    return DomainError(404, f"{what} {object_id} does not exist.")
