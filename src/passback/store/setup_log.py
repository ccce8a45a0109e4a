"""Who changed a course's setup: every category import or mapping, link, switch and fix, with its actor.

Grades written are in the audit log; the setup that decides where they go is here, so
"who linked this assignment there?" has an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.identity import Pairing
from passback.store.tables import setup_changes


def record_setup_change(store: Store, pairing: Pairing, course_id: str, action: str, actor: str,
                        detail: dict[str, Any]) -> None:
    with store.transaction() as db:
        db.execute(setup_changes.insert().values(
            at=datetime.now(UTC), actor=actor[:100], source_connection_id=pairing.source_connection_id,
            destination_connection_id=pairing.destination_connection_id, course_id=course_id, action=action,
            detail=detail))


def list_setup_changes(store: Store, pairing: Pairing, course_id: str | None = None) -> list[dict[str, Any]]:
    """The setup changes of the pair (of one course), oldest first."""
    query = sa.select(setup_changes).where(
        setup_changes.c.source_connection_id == pairing.source_connection_id,
        setup_changes.c.destination_connection_id == pairing.destination_connection_id).order_by(setup_changes.c.id)
    if course_id is not None:
        query = query.where(setup_changes.c.course_id == course_id)
    with store.engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(query)]
