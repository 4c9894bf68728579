"""The caller of a request: the user, the org units they reach, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, or_, true
from sqlalchemy.orm import Session

from server.access import policy
from server.orgs.tree import ancestor_ids, subtree_ids
from server.users.models import User


@dataclass(frozen=True)
class Actor:
    """A signed-in user with their reach; `org_ids` None means the whole system."""

    user: User
    org_ids: frozenset[int] | None
    # Org units above the user's own: clips they own are shared down to this user (read only).
    ancestor_org_ids: frozenset[int]
    ip: str
    via_cookie: bool = False

    @property
    def role(self) -> str:
        """The user's role."""
        return self.user.role

    @property
    def is_global(self) -> bool:
        """True for a user without an org unit (the bootstrap admin): reaches everything."""
        return self.org_ids is None

    def may(self, permission: str) -> bool:
        """True when the user's role holds the permission."""
        return policy.may(self.user.role, permission)

    def may_run_emergency(self) -> bool:
        """True when this user may create an emergency approved at once."""
        return policy.may_run_emergency(
            role=self.user.role, can_emergency=bool(self.user.can_emergency)
        )

    def reaches(self, org_unit_id: int | None) -> bool:
        """True when the org unit is inside the user's subtree (None: only global users)."""
        if self.org_ids is None:
            return True
        return org_unit_id is not None and org_unit_id in self.org_ids

    def reads_clip_of(self, org_unit_id: int | None) -> bool:
        """Clips are shared down the tree: system-wide (None), own subtree, or an ancestor's."""
        return (
            org_unit_id is None
            or self.reaches(org_unit_id)
            or (org_unit_id in self.ancestor_org_ids)
        )

    def org_clause(self, column: Any) -> ColumnElement[bool]:
        """SQL condition: the org-unit column is inside the user's subtree."""
        if self.org_ids is None:
            return true()
        if not self.org_ids:
            return false()
        return column.in_(sorted(self.org_ids))  # type: ignore[no-any-return]

    def clip_clause(self, column: Any) -> ColumnElement[bool]:
        """SQL condition for readable clips (see reads_clip_of)."""
        if self.org_ids is None:
            return true()
        visible = sorted(self.org_ids | self.ancestor_org_ids)
        return or_(column.is_(None), column.in_(visible))


def load_actor(db: Session, *, user: User, ip: str, via_cookie: bool) -> Actor:
    """Work out the user's reach (one recursive query, plus the few ancestors)."""
    if user.org_unit_id is None:
        return Actor(
            user=user, org_ids=None, ancestor_org_ids=frozenset(), ip=ip, via_cookie=via_cookie
        )
    reach = frozenset(subtree_ids(db, root_id=user.org_unit_id))
    above = frozenset(ancestor_ids(db, org_unit_id=user.org_unit_id)) - {user.org_unit_id}
    return Actor(user=user, org_ids=reach, ancestor_org_ids=above, ip=ip, via_cookie=via_cookie)
