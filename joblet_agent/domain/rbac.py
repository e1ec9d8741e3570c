"""Who may do what: cumulative roles and one table from action to the least role allowed.

reader < developer < maintainer < admin. Some actions are the caller's own business below
maintainer (OWN_ONLY): a developer stops only their own jobs, mounts only their own volumes and
those shared with them; maintainers and admins act on everyone's. Relaxed isolation and the
host's network are admin's. api/roles.py says which routes need which actions, and
docs/roles.md is generated from both tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from joblet_agent.domain.owner import CERT, UNIX, owner_of
from joblet_agent.domain.sharing import Principal
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
    HEALTH = "health"
    JOB_READ = "job.read"  # list, get, metrics: every job's state and resources
    JOB_INSPECT = "job.inspect"  # a job's arguments, environment values and output (logs)
    JOB_RUN = "job.run"
    JOB_STOP = "job.stop"
    JOB_CANCEL = "job.cancel"
    JOB_DELETE = "job.delete"
    JOB_DELETE_ALL = "job.delete-all"
    JOB_RELAX = "job.relax-isolation"  # run a job with a weaker profile (spec.relax)
    JOB_EXEC = "job.exec"  # run a command in a running job, attach to its command
    JOB_WRITE_FILES = "job.write-files"  # copy files into a running job
    JOB_LIFETIME = "job.lifetime"  # extend a running job's timeout, pause and resume it
    JOB_HOST_NETWORK = "job.host-network"  # run a job in the host's network namespace
    UPLOAD = "upload"  # send files for one's own next job
    VOLUME_READ = "volume.read"  # list and show volumes
    VOLUME_CREATE = "volume.create"  # also by a job naming a volume that does not exist
    VOLUME_USE = "volume.use"  # mount in a job (read-only only, if shared read-only)
    VOLUME_SHARE = "volume.share"  # share and unshare
    VOLUME_REMOVE = "volume.remove"
    NETWORK_READ = "network.read"  # list and show networks
    NETWORK_CREATE = "network.create"  # also by a job naming a network that does not exist
    NETWORK_JOIN = "network.join"  # run a job on it (with a --name, unless shared --ro)
    NETWORK_SHARE = "network.share"
    NETWORK_REMOVE = "network.remove"
    RUNTIME_READ = "runtime.read"  # list, info, validate
    RUNTIME_INSTALL = "runtime.install"  # one that relaxes isolation also needs JOB_RELAX
    RUNTIME_INSECURE = "runtime.install-over-plain-http"  # rnx runtime install --insecure-http
    RUNTIME_REMOVE = "runtime.remove"
    SCHEDULE_READ = "schedule.read"  # list and show schedules
    SCHEDULE_CREATE = "schedule.create"  # a recurring schedule of one's own jobs
    SCHEDULE_MANAGE = "schedule.manage"  # pause, resume, delete (one's own; maintainers any)


REQUIRED: dict[Action, Role] = {
    Action.HEALTH: Role.READER,
    Action.JOB_READ: Role.READER,
    Action.JOB_INSPECT: Role.READER,
    Action.JOB_RUN: Role.DEVELOPER,
    Action.JOB_STOP: Role.DEVELOPER,
    Action.JOB_CANCEL: Role.DEVELOPER,
    Action.JOB_DELETE: Role.DEVELOPER,
    Action.JOB_DELETE_ALL: Role.DEVELOPER,
    Action.JOB_RELAX: Role.ADMIN,
    Action.JOB_HOST_NETWORK: Role.ADMIN,
    Action.JOB_EXEC: Role.DEVELOPER,
    Action.JOB_WRITE_FILES: Role.DEVELOPER,
    Action.JOB_LIFETIME: Role.DEVELOPER,
    Action.UPLOAD: Role.DEVELOPER,
    Action.VOLUME_READ: Role.READER,
    # Storage under a per-owner cap (jobs.max_volumes_per_owner): self-service for developers.
    Action.VOLUME_CREATE: Role.DEVELOPER,
    Action.VOLUME_USE: Role.DEVELOPER,
    Action.VOLUME_SHARE: Role.DEVELOPER,
    Action.VOLUME_REMOVE: Role.DEVELOPER,
    Action.NETWORK_READ: Role.READER,
    # A network is host plumbing (a bridge, NAT rules, a CIDR routed on the host): maintainers
    # make them and share them with developers.
    Action.NETWORK_CREATE: Role.MAINTAINER,
    Action.NETWORK_JOIN: Role.DEVELOPER,
    Action.NETWORK_SHARE: Role.MAINTAINER,
    Action.NETWORK_REMOVE: Role.MAINTAINER,
    Action.RUNTIME_READ: Role.READER,
    Action.RUNTIME_INSTALL: Role.MAINTAINER,
    # Whoever is on the path of a plain http:// registry chooses the archive and its sha256.
    Action.RUNTIME_INSECURE: Role.ADMIN,
    Action.RUNTIME_REMOVE: Role.MAINTAINER,
    Action.SCHEDULE_READ: Role.READER,
    Action.SCHEDULE_CREATE: Role.DEVELOPER,
    Action.SCHEDULE_MANAGE: Role.DEVELOPER,
}
# Below this role, these actions apply to the caller's own jobs, volumes and networks (and to
# volumes and networks shared with them); from it on, to everyone's.
ANYONES_JOBS = Role.MAINTAINER
OWN_ONLY = frozenset(
    {
        Action.JOB_INSPECT,
        Action.JOB_STOP,
        Action.JOB_CANCEL,
        Action.JOB_DELETE,
        Action.JOB_DELETE_ALL,
        Action.JOB_EXEC,
        Action.JOB_WRITE_FILES,
        Action.JOB_LIFETIME,
        Action.VOLUME_READ,
        Action.VOLUME_USE,
        Action.VOLUME_SHARE,
        Action.VOLUME_REMOVE,
        Action.NETWORK_READ,
        Action.NETWORK_JOIN,
        Action.NETWORK_SHARE,
        Action.NETWORK_REMOVE,
        Action.SCHEDULE_MANAGE,
    }
)
# Of those, what a share (domain/sharing.py) also grants on someone else's volume or network.
SHARED_USE = frozenset(
    {Action.VOLUME_READ, Action.VOLUME_USE, Action.NETWORK_READ, Action.NETWORK_JOIN}
)


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the certificate's CN, or the local user name
    role: Role
    transport: str  # "tls" or "unix"

    @property
    def owner(self) -> str:
        """Whom what the caller makes belongs to: cert:NAME or unix:NAME (domain/owner.py)."""
        return owner_of(CERT if self.transport == "tls" else UNIX, self.name)

    @property
    def acts_on_anyones_jobs(self) -> bool:
        return self.role.at_least(ANYONES_JOBS)

    @property
    def principal(self) -> Principal:
        """As volumes and networks see the caller (domain/sharing.py)."""
        return Principal(self.owner, manages_all=self.acts_on_anyones_jobs)

    def may(self, action: Action) -> bool:
        return self.role.at_least(REQUIRED[action])


def permits(caller: Caller, action: Action, *, owner: str | None = None) -> bool:
    """authorize() as a question."""
    if not caller.may(action):
        return False
    return owner is None or owner == caller.owner or caller.acts_on_anyones_jobs


def authorize(caller: Caller, action: Action, *, owner: str | None = None) -> None:
    """Raise FORBIDDEN unless the caller's role allows `action` (on a job owned by `owner`)."""
    needed = REQUIRED[action]
    if not caller.role.at_least(needed):
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"{caller.owner} ({caller.role}) may not {action}; it needs the {needed} role",
        )
    if owner is not None and owner != caller.owner and not caller.acts_on_anyones_jobs:
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"{caller.owner} ({caller.role}) may not {action} a job of {owner}; "
            f"only its owner or a {ANYONES_JOBS} may",
        )
