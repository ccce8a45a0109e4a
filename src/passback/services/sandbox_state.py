"""What passback keeps about the sandbox district, forgotten when the district is made afresh."""

from __future__ import annotations

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.tables import connections, identity_map

SANDBOX_SOURCE = "sandbox-canvas"
SANDBOX_DESTINATION = "sandbox-powerteacher"


def forget_sandbox_state(store: Store, names: tuple[str, ...] = (SANDBOX_SOURCE, SANDBOX_DESTINATION)) -> int:
    """A fresh district means the identity map of the sandbox connections no longer holds."""
    with store.transaction() as db:
        ids = db.execute(sa.select(connections.c.id).where(connections.c.name.in_(names))).scalars().all()
        if not ids:
            return 0
        result = db.execute(identity_map.delete().where(identity_map.c.source_connection_id.in_(ids)))
    return int(result.rowcount or 0)
