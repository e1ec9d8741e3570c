"""SQLite job records under the agent's StateDirectory; the only module touching the database."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.owner import legacy_owner
from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""
# Jobs are found by name too (`rnx job status NAME`): a column of its own, indexed. Databases of
# agents before it get it at start, filled from the records.
_NAMES = """
ALTER TABLE jobs ADD COLUMN name TEXT;
UPDATE jobs SET name = json_extract(record, '$.spec.name');
"""
_NAME_INDEX = "CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name)"


class SqliteJobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One connection, used from the event loop thread only; writes are tiny and fast.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "name" not in columns:
            self._db.executescript(_NAMES)
        self._db.execute(_NAME_INDEX)
        self._qualify_owners()
        path.chmod(0o600)

    def _qualify_owners(self) -> None:
        """Records of agents before owners had a namespace (cert:, unix:) name a bare owner:
        qualified once, as domain/owner.py's legacy_owner says."""
        rows = self._db.execute("SELECT DISTINCT owner FROM jobs WHERE instr(owner, ':') = 0")
        for (bare,) in rows.fetchall():
            owner = legacy_owner(bare)
            changed = self._db.execute(
                "UPDATE jobs SET owner = ?, record = json_set(record, '$.owner', ?) "
                "WHERE owner = ?",
                (owner, owner, bare),
            ).rowcount
            logger.info("the owner of %d job(s) recorded as %r is now %s", changed, bare, owner)

    def close(self) -> None:
        self._db.close()

    def put(self, record: JobRecord) -> None:
        # Secret values are needed only until the job's process has its environment.
        data = json.dumps(record.to_dict(with_secrets=False))
        self._db.execute(
            "INSERT INTO jobs (id, state, owner, created_at, record, name) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state=excluded.state, record=excluded.record",
            (
                record.id,
                str(record.state),
                record.owner,
                record.created_at.isoformat(),
                data,
                record.spec.name,
            ),
        )
        logger.debug("stored job %s as %s", record.id, record.state)

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.from_dict(json.loads(row[0])) if row else None

    def find_prefix(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 11",
            (escaped + "%",),
        ).fetchall()
        return [row[0] for row in rows]

    def find_name(self, name: str) -> list[str]:
        """Ids of the jobs named `name`, newest first (at most 11: enough to say it is many)."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE name = ? ORDER BY created_at DESC LIMIT 11", (name,)
        ).fetchall()
        return [row[0] for row in rows]

    def with_files(self, states: frozenset[JobState]) -> list[JobRecord]:
        """Read in SQLite, not by decoding every record: ended jobs pile up by the thousand."""
        query = "SELECT record FROM jobs WHERE json_extract(record, '$.files_reclaimed_at') IS NULL"
        query += f" AND state IN ({','.join('?' * len(states))})"
        rows = self._db.execute(query, sorted(str(s) for s in states))
        return [JobRecord.from_dict(json.loads(r[0])) for r in rows]

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        query = "SELECT record FROM jobs WHERE 1=1"
        params: list[object] = []
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            params += sorted(str(s) for s in states)
        if owner is not None:
            query += " AND owner = ?"
            params.append(owner)
        query += " ORDER BY created_at DESC, id"
        if limit is not None:
            query += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [JobRecord.from_dict(json.loads(r[0])) for r in self._db.execute(query, params)]

    def delete(self, job_id: str) -> None:
        cursor = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        if cursor.rowcount == 0:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")
