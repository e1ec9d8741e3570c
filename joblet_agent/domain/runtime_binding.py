"""Picking an installed runtime for a job, and checking the job against what the runtime needs.

Pure: the installed runtimes come in as data (adapters/runtime_store.py reads them from disk).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from joblet_agent.domain.job import RELAXATIONS, JobSpec, Limits
from joblet_agent.domain.quantities import format_size
from joblet_agent.domain.runtime import RuntimeSpec
from joblet_agent.domain.runtime_reference import RuntimeRef
from joblet_agent.errors import ErrorCode, JobletError


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an installed runtime's archive came from, as the client that installed it said
    (the agent has no network to ask the registry itself), and who installed it when."""

    registry: str | None = None  # the index's URL (or path on the installing machine)
    archive: str | None = None  # the archive's URL, as the index gave it
    insecure: bool = False  # fetched over plain http:// (an admin's explicit --insecure-http)
    installed_by: str | None = None
    installed_at: str | None = None  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "archive": self.archive,
            "insecure": self.insecure,
            "installed_by": self.installed_by,
            "installed_at": self.installed_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """From an install record; what is missing or of the wrong type is unknown (None)."""

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(
            registry=text("registry"),
            archive=text("archive"),
            insecure=data.get("insecure") is True,
            installed_by=text("installed_by"),
            installed_at=text("installed_at"),
        )


@dataclass(frozen=True, slots=True)
class InstalledRuntime:
    spec: RuntimeSpec
    directory: PurePosixPath  # <runtimes dir>/<language>/<name>
    sha256: str | None = None  # of the archive it was installed from: the registry index's
    provenance: Provenance | None = None  # None: not installed through the API

    @property
    def name(self) -> str:
        return self.spec.name


def resolve(ref: RuntimeRef, installed: Sequence[InstalledRuntime], arch: str) -> InstalledRuntime:
    by_name = {r.name: r for r in installed}
    found = by_name.get(ref.name)
    if found is None:
        raise JobletError(
            ErrorCode.NOT_FOUND,
            f"runtime: {str(ref)!r} is not installed; {_installed_text(installed)}",
            hint=_near_hint(ref.name, installed),
        )
    if ref.release is not None and found.spec.release != ref.release:
        raise JobletError(
            ErrorCode.NOT_FOUND,
            f"runtime: {str(ref)!r}: {found.name} is installed at release "
            f"{found.spec.release}, not {ref.release}",
            hint=f"rnx runtime install {ref} replaces it, or run with --runtime={found.name}",
        )
    if found.spec.architectures and arch not in found.spec.architectures:
        raise JobletError(
            ErrorCode.UNSUPPORTED,
            f"runtime: {found.name} is built for {', '.join(found.spec.architectures)}; "
            f"this host is {arch}",
        )
    return found


def _installed_text(installed: Sequence[InstalledRuntime]) -> str:
    if not installed:
        return "no runtimes are installed"
    return "installed: " + ", ".join(sorted(r.name for r in installed))


def _near_hint(name: str, installed: Sequence[InstalledRuntime]) -> str:
    names = sorted(r.name for r in installed)
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    # Same language, other versions (python-3.12 -> python-3.11, python-3.13) even when the
    # spelling is further off than difflib's cutoff.
    language = name.split("-", 1)[0]
    near += [n for n in names if n.split("-", 1)[0] == language and n not in near]
    if near:
        return f"did you mean {', '.join(near)}? rnx runtime list shows what is installed"
    return "rnx runtime install NAME adds one; rnx runtime list shows what is installed"


def check_requirements(runtime: InstalledRuntime, limits: Limits) -> list[str]:
    """Refuses a job whose memory limit is below the runtime's minimum; warns below the
    recommended amount. No limit means the host's memory, which the admin sized."""
    needs = runtime.spec.requirements
    memory = limits.memory_bytes
    if memory is None:
        return []
    if needs.min_memory is not None and memory < needs.min_memory:
        raise JobletError(
            ErrorCode.INVALID,
            f"limits.memory_bytes: {format_size(memory)} is below what runtime {runtime.name} "
            f"needs: min_memory {format_size(needs.min_memory)}",
            hint=f"run with --max-memory={format_size(needs.min_memory)} or more",
        )
    if needs.recommended_memory is not None and memory < needs.recommended_memory:
        return [
            f"limits.memory_bytes: {format_size(memory)} is below runtime {runtime.name}'s "
            f"recommended_memory {format_size(needs.recommended_memory)}"
        ]
    return []


def bind_runtime(spec: JobSpec, runtime: InstalledRuntime) -> tuple[JobSpec, list[str]]:
    """The job checked against its runtime's requirements; its spec then records exactly which
    release runs and the relaxations the runtime brings (jobs of a JIT runtime get wx-memory
    without asking: the admin who installed the runtime granted it; docs/runtimes.md)."""
    warnings = check_requirements(runtime, spec.limits)
    added = sorted(set(runtime.spec.relax) - set(spec.relax))
    warnings += [f"runtime {runtime.name} relaxes isolation: {RELAXATIONS[r]}" for r in added]
    bound = dataclasses.replace(
        spec,
        runtime=f"{runtime.name}@{runtime.spec.release}",
        relax=tuple(sorted({*spec.relax, *runtime.spec.relax})),
    )
    return bound, warnings
