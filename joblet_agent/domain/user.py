"""The pool of unprivileged users jobs run as: joblet-u0 ... joblet-u<max_running - 1>, UIDs from
jobs.uid_base (adapters/userdb.py publishes them as userdb records for PID 1 to resolve)."""

from __future__ import annotations

from dataclasses import dataclass

from joblet_agent.domain.config import JobPolicy

NAME_PREFIX = "joblet-u"


@dataclass(frozen=True, slots=True)
class JobUser:
    """The unprivileged user a job runs as: one of the agent's pool, never shared by live jobs."""

    name: str
    uid: int


def pool_user(policy: JobPolicy, slot: int) -> JobUser:
    return JobUser(name=f"{NAME_PREFIX}{slot}", uid=policy.uid_base + slot)


def pool(policy: JobPolicy) -> list[JobUser]:
    return [pool_user(policy, slot) for slot in range(policy.max_running)]
