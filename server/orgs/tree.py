"""Walking the org-unit tree; only models here, so server.access.actor can import it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.orgs.models import OrgUnit


def subtree_ids(db: Session, *, root_id: int) -> set[int]:
    """Ids of root_id and every org unit below it, at any depth (recursive CTE)."""
    tree = select(OrgUnit.id).where(OrgUnit.id == root_id).cte("tree", recursive=True)
    tree = tree.union_all(select(OrgUnit.id).where(OrgUnit.parent_id == tree.c.id))
    return set(db.scalars(select(tree.c.id)))


def ancestor_ids(db: Session, *, org_unit_id: int) -> list[int]:
    """Ids from org_unit_id up to the root, nearest first."""
    out: list[int] = []
    current: int | None = org_unit_id
    while current is not None and current not in out:
        out.append(current)
        current = db.scalar(select(OrgUnit.parent_id).where(OrgUnit.id == current))
    return out
