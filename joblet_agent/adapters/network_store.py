"""SQLite records of the networks, in the agent's jobs database (a table of their own).

Which job has which address is recorded on the job itself (JobRecord.endpoint); a network keeps
only where the next address search starts, so that freed addresses rest before reuse.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from joblet_agent.domain.network import Network
from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0
);
"""


class SqliteNetworkStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, network: Network) -> None:
        try:
            self._db.execute(
                "INSERT INTO networks (name, record) VALUES (?, ?)",
                (network.name, json.dumps(network.to_dict())),
            )
        except sqlite3.IntegrityError:
            raise JobletError(
                ErrorCode.CONFLICT, f"network {network.name!r} already exists"
            ) from None
        logger.debug("stored network %s", network.name)

    def save(self, network: Network) -> None:
        self._db.execute(
            "UPDATE networks SET record = ? WHERE name = ?",
            (json.dumps(network.to_dict()), network.name),
        )

    def get(self, name: str) -> Network | None:
        row = self._db.execute("SELECT record FROM networks WHERE name = ?", (name,)).fetchone()
        return Network.from_dict(json.loads(row[0])) if row else None

    def list(self) -> list[Network]:
        rows = self._db.execute("SELECT record FROM networks ORDER BY name").fetchall()
        return [Network.from_dict(json.loads(r[0])) for r in rows]

    def remove(self, name: str) -> None:
        self._db.execute("DELETE FROM networks WHERE name = ?", (name,))

    def cursor(self, name: str) -> int:
        row = self._db.execute("SELECT cursor FROM networks WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, cursor: int) -> None:
        self._db.execute("UPDATE networks SET cursor = ? WHERE name = ?", (cursor, name))
