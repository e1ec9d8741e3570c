"""The pool of unprivileged users jobs run as, published as systemd userdb drop-in records.

PID 1 resolves User= through NSS, and nss-systemd reads JSON user records from /run/userdb
directly (systemd >= 246; no daemon needed). So the agent can give each job a user of its own
whose UID it knows before the job starts (to own /work, and for the passwd file in the job's
root) without ever writing the host's /etc/passwd. Records live in /run and are rewritten at
every agent start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.user import pool
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

USERDB_DIR = Path("/run/userdb")


def publish_pool(policy: JobPolicy, directory: Path = USERDB_DIR) -> None:
    """Write the pool's user and group records (idempotent; only missing ones are written)."""
    directory.mkdir(mode=0o755, exist_ok=True)
    written = 0
    for user in pool(policy):
        records = {
            f"{user.name}.user": {
                "userName": user.name,
                "uid": user.uid,
                "gid": user.uid,
                "realName": "Joblet job",
                "homeDirectory": "/work",
                "shell": "/bin/sh",
                "disposition": "dynamic",
                "locked": True,
            },
            f"{user.name}.group": {
                "groupName": user.name,
                "gid": user.uid,
                "disposition": "dynamic",
            },
        }
        for filename, record in records.items():
            path = directory / filename
            if not path.exists():
                write_atomic(path, json.dumps(record) + "\n", mode=0o644)
                written += 1
        # nss-systemd looks UIDs and GIDs up by these links.
        for link, target in (
            (f"{user.uid}.user", f"{user.name}.user"),
            (f"{user.uid}.group", f"{user.name}.group"),
        ):
            if not (directory / link).is_symlink():
                (directory / link).symlink_to(target)
    logger.info(
        "userdb: %d job users (UIDs %d-%d), %d records written",
        policy.max_running,
        policy.uid_base,
        policy.uid_base + policy.max_running - 1,
        written,
    )


def publish_group(name: str, gid: int, directory: Path = USERDB_DIR) -> None:
    """A group record (a volume's: jobs mounting it join it through SupplementaryGroups=)."""
    directory.mkdir(mode=0o755, exist_ok=True)
    record = {"groupName": name, "gid": gid, "disposition": "dynamic"}
    write_atomic(directory / f"{name}.group", json.dumps(record) + "\n", mode=0o644)
    link = directory / f"{gid}.group"
    if not link.is_symlink():
        link.symlink_to(f"{name}.group")


def withdraw_group(name: str, gid: int, directory: Path = USERDB_DIR) -> None:
    for path in (directory / f"{gid}.group", directory / f"{name}.group"):
        path.unlink(missing_ok=True)


class UserdbGroups:
    """The GroupRecords port: volumes' groups as userdb records in `directory`."""

    def __init__(self, directory: Path = USERDB_DIR) -> None:
        self.directory = directory

    def publish_group(self, name: str, gid: int) -> None:
        publish_group(name, gid, self.directory)

    def withdraw_group(self, name: str, gid: int) -> None:
        withdraw_group(name, gid, self.directory)
