"""What a parsed job needs before it may start: its runtime bound, its upload taken with a /work
big enough, a user of the pool no live job has."""

from __future__ import annotations

import dataclasses

from joblet_agent.domain.archive import Extracted
from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.job import JobSpec
from joblet_agent.domain.runtime_binding import InstalledRuntime, bind_runtime, resolve
from joblet_agent.domain.runtime_reference import parse_reference
from joblet_agent.domain.user import JobUser, pool_user
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import RuntimeCatalog

MIB = 1024**2


def with_runtime(
    spec: JobSpec, runtimes: RuntimeCatalog | None
) -> tuple[JobSpec, InstalledRuntime | None, tuple[str, ...]]:
    """The runtime spec.runtime names, resolved among the installed ones and bound."""
    if spec.runtime is None:
        return spec, None, ()
    runtime = resolve(
        parse_reference(spec.runtime),
        runtimes.installed() if runtimes else [],
        runtimes.arch if runtimes else "",
    )
    bound, warnings = bind_runtime(spec, runtime)
    return bound, runtime, tuple(warnings)


def room_for_upload(
    spec: JobSpec, received: Extracted, *, work_bytes_given: bool, most: int
) -> JobSpec:
    """A /work big enough for the upload: grown from the default when the job named no size,
    refused (naming the size needed) when it named one too small, or when the agent's maximum is."""
    # Files round up to 4 KiB blocks; mkfs.ext4 makes one inode per 16 KiB; 10% + 16 MiB for
    # the filesystem's own metadata and some room to write.
    blocks = received.bytes + received.entries * 4096
    needed = max(blocks, received.entries * 16384) * 11 // 10 + 16 * MIB
    needed = -(-needed // MIB) * MIB
    have = spec.limits.work_bytes or 0
    if needed <= have:
        return spec
    if work_bytes_given or needed > most:
        raise JobletError(
            ErrorCode.INVALID,
            f"limits.work_bytes: {min(have, most) if needed > most else have} is too small "
            f"for the upload ({received.files} files, {received.bytes} bytes): /work needs "
            f"at least {needed} bytes"
            + (f"; this agent allows at most {most}" if needed > most else ""),
            hint="give a larger --work-size" if needed <= most else "upload less",
        )
    return dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, work_bytes=needed))


class UserPool:
    """Hands out pool users no live job has: jobs never share a UID, so they cannot see, signal
    or ptrace each other. A user handed out is claimed until the job's record holds it (the
    submit awaits the /work image and the network between choosing and recording)."""

    def __init__(self, policy: JobPolicy) -> None:
        self.policy = policy
        self._claimed: set[str] = set()

    def claim(self, live: set[str | None]) -> JobUser:
        taken = live | self._claimed
        for slot in range(self.policy.max_running):
            user = pool_user(self.policy, slot)
            if user.name not in taken:
                self._claimed.add(user.name)
                return user
        raise JobletError(
            ErrorCode.CONFLICT,
            f"{self.policy.max_running} jobs are running, the most this agent allows",
            hint="wait for jobs to end, or raise jobs.max_running in joblet.yml",
        )

    def recorded(self, user: JobUser) -> None:
        """The job's record holds the user now (or the job was refused): the claim is over."""
        self._claimed.discard(user.name)
