"""Who may do what: cumulative roles and one table from action to the least role allowed.

reader < developer < maintainer < admin. Developers act on their own jobs only; maintainers and
admins on anyone's. Relaxed isolation and removals of shared things are admin's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from joblet_agent.errors import ErrorCode, JobletError


class Role(StrEnum):
    READER = "reader"
    DEVELOPER = "developer"
    MAINTAINER = "maintainer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank

    @classmethod
    def least(cls, roles: list[Role]) -> Role:
        return min(roles, key=lambda r: r.rank)

    @classmethod
    def most(cls, roles: list[Role]) -> Role:
        return max(roles, key=lambda r: r.rank)


class Action(StrEnum):
    JOB_READ = "job.read"  # list, get, logs, metrics
    JOB_RUN = "job.run"
    JOB_STOP = "job.stop"
    JOB_CANCEL = "job.cancel"
    JOB_DELETE = "job.delete"
    JOB_DELETE_ALL = "job.delete-all"
    JOB_RELAX = "job.relax-isolation"  # run a job with a weaker profile (spec.relax)
    JOB_EXEC = "job.exec"  # run a command in a running job, attach to its command
    JOB_WRITE_FILES = "job.write-files"  # copy files into a running job
    JOB_LIFETIME = "job.lifetime"  # extend a running job's timeout, pause and resume it
    UPLOAD = "upload"  # send files for one's own next job
    VOLUME_READ = "volume.read"  # list volumes
    VOLUME_MANAGE = "volume.manage"  # create and remove volumes
    JOB_HOST_NETWORK = "job.host-network"  # run a job in the host's network namespace
    NETWORK_READ = "network.read"
    NETWORK_CREATE = "network.create"
    NETWORK_REMOVE = "network.remove"
    HEALTH = "health"
    RUNTIME_READ = "runtime.read"  # list, info, validate
    RUNTIME_INSTALL = "runtime.install"  # one that relaxes isolation also needs JOB_RELAX
    RUNTIME_INSECURE = "runtime.install-over-plain-http"  # rnx runtime install --insecure-http
    RUNTIME_REMOVE = "runtime.remove"


REQUIRED: dict[Action, Role] = {
    Action.HEALTH: Role.READER,
    Action.JOB_READ: Role.READER,
    Action.JOB_RUN: Role.DEVELOPER,
    Action.JOB_STOP: Role.DEVELOPER,
    Action.JOB_CANCEL: Role.DEVELOPER,
    Action.JOB_DELETE: Role.DEVELOPER,
    Action.JOB_DELETE_ALL: Role.DEVELOPER,
    Action.JOB_RELAX: Role.ADMIN,
    Action.JOB_EXEC: Role.DEVELOPER,
    Action.JOB_WRITE_FILES: Role.DEVELOPER,
    Action.JOB_LIFETIME: Role.DEVELOPER,
    Action.UPLOAD: Role.DEVELOPER,
    Action.VOLUME_READ: Role.READER,
    Action.VOLUME_MANAGE: Role.MAINTAINER,
    Action.JOB_HOST_NETWORK: Role.ADMIN,
    Action.NETWORK_READ: Role.READER,
    Action.NETWORK_CREATE: Role.MAINTAINER,
    Action.NETWORK_REMOVE: Role.MAINTAINER,
    Action.RUNTIME_READ: Role.READER,
    Action.RUNTIME_INSTALL: Role.MAINTAINER,
    # Whoever is on the path of a plain http:// registry chooses the archive and its sha256.
    Action.RUNTIME_INSECURE: Role.ADMIN,
    Action.RUNTIME_REMOVE: Role.MAINTAINER,
}
# Below this role, acting on a job needs owning it.
ANYONES_JOBS = Role.MAINTAINER


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the certificate's CN, or the local user name; shown as a job's owner
    role: Role
    transport: str  # "tls" or "unix"

    @property
    def acts_on_anyones_jobs(self) -> bool:
        return self.role.at_least(ANYONES_JOBS)


def authorize(caller: Caller, action: Action, *, owner: str | None = None) -> None:
    """Raise FORBIDDEN unless the caller's role allows `action` (on a job owned by `owner`)."""
    needed = REQUIRED[action]
    if not caller.role.at_least(needed):
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"{caller.name} ({caller.role}) may not {action}; it needs the {needed} role",
        )
    if owner is not None and owner != caller.name and not caller.acts_on_anyones_jobs:
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"{caller.name} ({caller.role}) may not {action} a job of {owner}; "
            f"only its owner or a {ANYONES_JOBS} may",
        )
