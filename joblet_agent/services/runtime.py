"""The runtime manager: list, describe, install, remove, validate and smoke-test runtimes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.rbac import Action, Caller, authorize
from joblet_agent.domain.runtime import RuntimeSpec, load_runtime_yml
from joblet_agent.domain.runtime_binding import InstalledRuntime, Provenance
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import RuntimeStore
from joblet_agent.services.job.service import JobService

_LIVE = frozenset(s for s in JobState if not s.is_terminal)


@dataclass(frozen=True, slots=True)
class Source:
    """What the installing client says of an archive's origin (PUT /v1/runtimes/{name}?...)."""

    registry: str | None = None
    archive: str | None = None
    insecure: bool = False


def _excerpt(text: str, limit: int = 80) -> str:
    """A short repr of an untrusted value for a message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class RuntimeService:
    def __init__(self, runtimes: RuntimeStore, jobs: JobService) -> None:
        self.runtimes = runtimes
        self.jobs = jobs

    def installed(self) -> list[InstalledRuntime]:
        return self.runtimes.installed()

    def get(self, name: str) -> InstalledRuntime:
        found = self.runtimes.find(name)
        if found is None:
            installed = ", ".join(r.name for r in self.installed()) or "none"
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"runtime {name!r} is not installed; installed: {installed}",
                hint="rnx runtime list shows them",
            )
        return found

    def users(self, name: str) -> list[JobRecord]:
        """Jobs not yet ended that run with this runtime."""
        return [
            r
            for r in self.jobs.list(states=_LIVE)
            if r.spec.runtime is not None and r.spec.runtime.split("@", 1)[0] == name
        ]

    async def install(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int,
        sha256: str,
        caller: Caller,
        source: Source | None = None,
    ) -> InstalledRuntime:
        """`sha256` is the registry index's, as the client read it: the archive must match it.
        Over plain http:// (`source.insecure`) only an admin may install: whoever is on the path
        chose the index, and with it the archive and its sha256."""
        source = source or Source()
        if source.insecure:
            authorize(caller, Action.RUNTIME_INSECURE)
        else:
            for key, url in (("registry", source.registry), ("archive", source.archive)):
                if url is not None and url.lower().startswith("http://"):
                    raise JobletError(
                        ErrorCode.INVALID,
                        f"{key}: {_excerpt(url)} is plain http://; allowed: https://, or "
                        "insecure=1 (admin only)",
                    )

        def approve(spec: RuntimeSpec) -> None:
            if spec.relax:
                # Every job of this runtime gets these relaxations without asking for them,
                # so installing it is as much as running a relaxed job: the admin's.
                authorize(caller, Action.JOB_RELAX)
            self._refuse_if_used(name, "replaced")

        provenance = Provenance(
            registry=source.registry,
            archive=source.archive,
            insecure=source.insecure,
            installed_by=caller.owner,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return await self.runtimes.install(
            name, chunks, size=size, sha256=sha256, approve=approve, provenance=provenance
        )

    def remove(self, name: str) -> InstalledRuntime:
        runtime = self.get(name)
        self._refuse_if_used(name, "removed")
        self.runtimes.remove(runtime)
        return runtime

    def _refuse_if_used(self, name: str, what: str) -> None:
        users = self.users(name)
        if users:
            ids = ", ".join(r.id[:8] for r in users[:5]) + (", ..." if len(users) > 5 else "")
            raise JobletError(
                ErrorCode.CONFLICT,
                f"runtime {name} cannot be {what}: {len(users)} job(s) still use it ({ids})",
                hint="wait for them to end, or stop them",
            )

    async def test(self, name: str, owner: str) -> JobRecord:
        """Run the runtime's own smoke test as a job of `owner`."""
        runtime = self.get(name)
        if not runtime.spec.smoke_test:
            raise JobletError(
                ErrorCode.INVALID, f"runtime {name} has no smoke_test in its runtime.yml"
            )
        command, *args = runtime.spec.smoke_test
        request: dict[str, Any] = {
            "command": command,
            "args": args,
            "runtime": name,
            "name": "runtime-test",
        }
        validated = parse_job_request(request, self.jobs.config.jobs, self.jobs.host)
        return await self.jobs.submit(validated, owner=owner)


def validate(text: str) -> RuntimeSpec:
    """A runtime.yml's text -> its spec, or the first error (for `rnx runtime validate`)."""
    return load_runtime_yml(text, "runtime.yml")
