"""SQLite job records under the agent's StateDirectory; the only module touching the database."""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
from pathlib import Path

from joblet_agent.adapters.sqlite_schema import Step, columns, migrate
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.owner import legacy_owner
from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger(__name__)


def _jobs_table(db: sqlite3.Connection) -> None:
    """1: the jobs, found by name too (`rnx job status NAME`). Databases of agents before
    migrations have the table, maybe without the name column: it is added, filled from the
    records."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
        "owner TEXT NOT NULL, created_at TEXT NOT NULL, record TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at)")
    if "name" not in columns(db, "jobs"):
        db.execute("ALTER TABLE jobs ADD COLUMN name TEXT")
        db.execute("UPDATE jobs SET name = json_extract(record, '$.spec.name')")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name)")


_STEPS: tuple[Step, ...] = (
    _jobs_table,
    # 2: the admission queue's order (domain/admission.py queue_key: when a job joined the
    # queue, less its priority's head start) and the runs of each schedule.
    """
    ALTER TABLE jobs ADD COLUMN queued_at REAL;
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
    ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
    CREATE INDEX jobs_state ON jobs (state);
    CREATE INDEX jobs_schedule ON jobs (schedule_id, created_at);
    """,
)
# The queue in its order: domain/admission.py queue_key in SQL, ties (the same instant) by
# insertion, so first come, first served. (Queries are built of these fixed texts and `?`
# placeholders only: the noqa: S608 below.)
_QUEUE_ORDER = "ORDER BY queued_at - priority * ?, rowid"


class SqliteJobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One connection, used from the event loop thread only; writes are tiny and fast.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db, "jobs", _STEPS)
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
        data = json.dumps(record.to_dict(with_secrets=False, stored=True))
        self._db.execute(
            "INSERT INTO jobs (id, state, owner, created_at, record, name, queued_at, priority, "
            "schedule_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state=excluded.state, record=excluded.record, "
            "queued_at=excluded.queued_at, priority=excluded.priority",
            (
                record.id,
                str(record.state),
                record.owner,
                record.created_at.isoformat(),
                data,
                record.spec.name,
                record.queued_at.timestamp() if record.queued_at else None,
                record.priority,
                record.schedule,
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
        schedule: str | None = None,
    ) -> list[JobRecord]:
        where, params = _filters(states, owner, schedule)
        query = f"SELECT record FROM jobs WHERE {where} ORDER BY created_at DESC, id"  # noqa: S608
        if limit is not None:
            query += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [JobRecord.from_dict(json.loads(r[0])) for r in self._db.execute(query, params)]

    def count(self, *, states: frozenset[JobState], owner: str | None = None) -> int:
        where, params = _filters(states, owner, None)
        query = f"SELECT COUNT(*) FROM jobs WHERE {where}"  # noqa: S608
        (count,) = self._db.execute(query, params).fetchone()
        return int(count)

    def queued(self, *, step_sec: float, limit: int, offset: int = 0) -> builtins.list[JobRecord]:
        """QUEUED jobs in the queue's order, `limit` of them from `offset`."""
        rows = self._db.execute(
            f"SELECT record FROM jobs WHERE state = ? {_QUEUE_ORDER} LIMIT ? OFFSET ?",  # noqa: S608
            (str(JobState.QUEUED), step_sec, limit, offset),
        )
        return [JobRecord.from_dict(json.loads(row[0])) for row in rows]

    def queue_order(self, *, step_sec: float) -> builtins.list[str]:
        """The ids of the QUEUED jobs, in the queue's order."""
        rows = self._db.execute(
            f"SELECT id FROM jobs WHERE state = ? {_QUEUE_ORDER}",  # noqa: S608
            (str(JobState.QUEUED), step_sec),
        )
        return [row[0] for row in rows]

    def delete(self, job_id: str) -> None:
        cursor = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        if cursor.rowcount == 0:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")


def _filters(
    states: frozenset[JobState] | None, owner: str | None, schedule: str | None
) -> tuple[str, list[object]]:
    where, params = ["1=1"], list[object]()
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        params += sorted(str(s) for s in states)
    if owner is not None:
        where.append("owner = ?")
        params.append(owner)
    if schedule is not None:
        where.append("schedule_id = ?")
        params.append(schedule)
    return " AND ".join(where), params
