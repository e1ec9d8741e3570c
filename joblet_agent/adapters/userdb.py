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
import os
from pathlib import Path

from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.user import NAME_PREFIX, pool
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

USERDB_DIR = Path("/run/userdb")


def publish_pool(policy: JobPolicy, directory: Path = USERDB_DIR) -> None:
    """Write the pool's user and group records (idempotent: a record is rewritten only when it
    differs, so a changed jobs.uid_base reaches PID 1; the UID links of an earlier base go)."""
    directory.mkdir(mode=0o755, exist_ok=True)
    written = 0
    links: dict[str, str] = {}
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
            path, text = directory / filename, json.dumps(record) + "\n"
            if not path.exists() or path.read_text() != text:
                write_atomic(path, text, mode=0o644)
                written += 1
        # nss-systemd looks UIDs and GIDs up by these links.
        links[f"{user.uid}.user"] = f"{user.name}.user"
        links[f"{user.uid}.group"] = f"{user.name}.group"
    for path in directory.iterdir():
        if not path.is_symlink() or path.name in links:
            continue
        if os.readlink(path).startswith(NAME_PREFIX):  # a pool user's, from another uid_base
            path.unlink()
    for link, target in links.items():
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
