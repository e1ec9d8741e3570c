"""SQLite records of the schedules, in the agent's jobs database (a table of their own)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from joblet_agent.adapters.sqlite_schema import Step, migrate
from joblet_agent.domain.schedule import ScheduleRecord
from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger(__name__)

_STEPS: tuple[Step, ...] = (
    # 1: the schedules, found by id, id prefix or name (unique among schedules).
    """
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        name TEXT UNIQUE,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        record TEXT NOT NULL
    );
    """,
)


class SqliteScheduleStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        migrate(self._db, "schedules", _STEPS)

    def close(self) -> None:
        self._db.close()

    def put(self, record: ScheduleRecord) -> None:
        try:
            self._db.execute(
                "INSERT INTO schedules (id, name, owner, created_at, record) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET record=excluded.record",
                (
                    record.id,
                    record.name,
                    record.owner,
                    record.created_at.isoformat(),
                    json.dumps(record.to_dict(stored=True)),
                ),
            )
        except sqlite3.IntegrityError:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"name: a schedule named {record.name!r} exists already",
                hint="rnx schedule list shows them; delete it or choose another --name",
            ) from None
        logger.debug("stored schedule %s as %s", record.id, record.state)

    def get(self, schedule_id: str) -> ScheduleRecord | None:
        row = self._db.execute(
            "SELECT record FROM schedules WHERE id = ?", (schedule_id,)
        ).fetchone()
        return ScheduleRecord.from_dict(json.loads(row[0])) if row else None

    def find_name(self, name: str) -> str | None:
        row = self._db.execute("SELECT id FROM schedules WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def find_prefix(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db.execute(
            "SELECT id FROM schedules WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 11",
            (escaped + "%",),
        )
        return [row[0] for row in rows]

    def list(self, *, owner: str | None = None) -> list[ScheduleRecord]:
        if owner is None:
            rows = self._db.execute("SELECT record FROM schedules ORDER BY created_at, id")
        else:
            rows = self._db.execute(
                "SELECT record FROM schedules WHERE owner = ? ORDER BY created_at, id", (owner,)
            )
        return [ScheduleRecord.from_dict(json.loads(row[0])) for row in rows]

    def delete(self, schedule_id: str) -> None:
        cursor = self._db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
        if cursor.rowcount == 0:
            raise JobletError(ErrorCode.NOT_FOUND, f"schedule {schedule_id} does not exist")
