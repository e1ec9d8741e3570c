"""Migrations of the agent's SQLite database: each table's owner (a store) lists its steps, and
each database remembers how many of them it has had, per owner, in `schema_versions`.

A step runs once, in a transaction with the new version number: an agent killed in the middle
leaves the database as it was, and the next start runs the step again. Steps are never edited
once released; a change of schema is a new step at the end of its list."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

# A step: SQL statements, or a function of the connection (for what SQL alone cannot decide).
Step = str | Callable[[sqlite3.Connection], None]

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_versions (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""


def migrate(db: sqlite3.Connection, owner: str, steps: Sequence[Step]) -> int:
    """Run the steps of `owner` the database has not had yet; returns its version now. A
    database of a newer agent (more steps than this one knows) is left alone."""
    db.execute(_VERSIONS)
    row = db.execute("SELECT version FROM schema_versions WHERE owner = ?", (owner,)).fetchone()
    version = row[0] if row else 0
    for number, step in enumerate(steps[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if callable(step):
                step(db)
            else:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(
                "INSERT INTO schema_versions (owner, version) VALUES (?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
                (owner, number),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        logger.info("database: %s schema at version %d", owner, number)
    return max(version, len(steps))


def _statements(script: str) -> list[str]:
    """A step's SQL, one statement at a time (executescript would commit our transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
