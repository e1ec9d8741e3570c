"""A job's deadline, kept by PID 1 and movable (`rnx job extend`), and its idle end. Pure.

systemd 252 cannot change a running service's RuntimeMaxSec= (SetUnitProperties refuses it),
so a job's timeout is not that: it is a transient timer, `joblet-deadline-<id>-<n>.timer`,
started with the job (the job `Wants=` it) and stopped with it (`PartOf=`), which when it
elapses starts `joblet-deadline-<id>-<n>.service`. That service `Conflicts=` the job's unit, so
PID 1 stops the job (SIGTERM, the grace period, SIGKILL) whether or not an agent is there; it
runs the host's /usr/bin/true as nobody with no capability and stays active (a marker), so the
agent learns, even after a restart, that the job ended by its deadline (TIMEOUT, exit 124).
Extending a job starts generation n+1 (a new timer from now), then stops generation n: there is
never a moment without a deadline. An idle job is ended the same way, by starting
`joblet-deadline-<id>-idle.service` at once. RuntimeMaxSec= stays what no extension may pass:
jobs.max_timeout, when the admin set one.
"""

from __future__ import annotations

from joblet_agent.domain.job import unit_name
from joblet_agent.units.properties import Property, prop

PREFIX = "joblet-deadline-"
IDLE = "idle"
TRUE = "/usr/bin/true"
NOBODY = "65534"
ACCURACY_USEC = 100_000  # systemd's default timer accuracy is a minute


def deadline_unit(job_id: str, generation: int | str, kind: str = "service") -> str:
    return f"{PREFIX}{job_id}-{generation}.{kind}"


def pattern(job_id: str) -> str:
    return f"{PREFIX}{job_id}-*"


def generation_of(unit: str, job_id: str) -> int | None:
    """n of joblet-deadline-<id>-<n>.timer (or .service); None for another unit."""
    stem = unit.removeprefix(f"{PREFIX}{job_id}-").rpartition(".")[0]
    return int(stem) if stem.isdigit() and unit.startswith(PREFIX) else None


def is_idle(unit: str) -> bool:
    return unit.endswith(f"-{IDLE}.service")


def marker(job_id: str, generation: int | str, slice_name: str) -> list[Property]:
    """The unit whose start ends the job (it conflicts with it) and stays as the record that
    the job's deadline (or idle time) ended it."""
    return [
        prop("Description", f"Joblet: the deadline of job {job_id}"),
        prop("Type", "oneshot"),
        prop("ExecStart", [[TRUE, [TRUE], False]]),
        prop("Environment", []),
        prop("RemainAfterExit", True),
        prop("Conflicts", [unit_name(job_id)]),
        prop("User", NOBODY),
        prop("Group", NOBODY),
        prop("CapabilityBoundingSet", 0),
        prop("NoNewPrivileges", True),
        prop("StandardInput", "null"),
        prop("Slice", slice_name),
        prop("CollectMode", "inactive-or-failed"),  # stopped by the agent once it read it
    ]


def timer(job_id: str, generation: int, seconds: float) -> list[Property]:
    return [
        prop("Description", f"Joblet: the deadline of job {job_id}"),
        prop("TimersMonotonic", [["OnActiveSec", max(1, round(seconds * 1_000_000))]]),
        prop("AccuracyUSec", ACCURACY_USEC),
        prop("RemainAfterElapse", False),
        prop("PartOf", [unit_name(job_id)]),
        prop("After", [unit_name(job_id)]),
        prop("CollectMode", "inactive-or-failed"),
    ]


def deadline_units(
    job_id: str, generation: int, seconds: float, slice_name: str
) -> list[tuple[str, list[Property]]]:
    """The timer and its marker, as auxiliary units of a StartTransientUnit call."""
    return [
        (deadline_unit(job_id, generation, "timer"), timer(job_id, generation, seconds)),
        (deadline_unit(job_id, generation), marker(job_id, generation, slice_name)),
    ]


def job_side(job_id: str) -> list[Property]:
    """The job's unit starts its first deadline's timer with it."""
    return [prop("Wants", [deadline_unit(job_id, 0, "timer")])]
