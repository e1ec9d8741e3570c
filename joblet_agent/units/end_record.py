"""How a job ended, recorded by PID 1's own account of it, outside the job. Pure.

The job's unit names two helper units, created with it in the same StartTransientUnit call:
`OnSuccess=joblet-end-success-<id>.service` and `OnFailure=joblet-end-failure-<id>.service`.
When the job's unit ends, PID 1 starts the one that applies and hands it the job's Result and its
main process's end in $MONITOR_SERVICE_RESULT, $MONITOR_EXIT_CODE and $MONITOR_EXIT_STATUS (set
only for a unit triggered by exactly one other, hence two helpers). The helper is the host's
/usr/bin/env with no argument: it prints its environment, and PID 1 writes that into the job's
root-only directory on the host (StandardOutputFileToTruncate=), which the job never sees. It
runs as `nobody` with no capability and PID 1's environment only: nothing of the job's reaches
it, and it needs no privilege at all. (No shell and no `$` in its argv: systemd 252 cannot read
`$$` back from the transient unit file it writes, so a daemon-reload would garble it.) It runs
whether or not an agent is there to watch, so a job that ended while the agent was away still
has its true end; the agent learns of it from the helper's JobRemoved signal.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from joblet_agent.domain.outcome import UnitEnd
from joblet_agent.units.properties import Property, prop

PREFIX = "joblet-end-"
KINDS = ("success", "failure")
ENV = "/usr/bin/env"
NOBODY = "65534"


def recorder_unit(job_id: str, kind: str) -> str:
    return f"{PREFIX}{kind}-{job_id}.service"


def job_of(unit: str) -> str | None:
    """The job id a recorder unit's name carries, or None for another unit."""
    rest = unit.removeprefix(PREFIX).removesuffix(".service")
    for kind in KINDS:
        if rest.startswith(f"{kind}-") and unit.startswith(PREFIX):
            return rest.removeprefix(f"{kind}-")
    return None


def triggers(job_id: str) -> list[Property]:
    """The job unit's side: which recorder PID 1 starts as it ends."""
    return [
        prop("OnSuccess", [recorder_unit(job_id, "success")]),
        prop("OnFailure", [recorder_unit(job_id, "failure")]),
    ]


def recorder_units(
    job_id: str, record: PurePosixPath, slice_name: str
) -> list[tuple[str, list[Property]]]:
    """(name, properties) of the two recorders, created (not started) with the job's unit."""
    return [
        (
            recorder_unit(job_id, kind),
            [
                prop("Description", f"Joblet: record how job {job_id} ended"),
                prop("Type", "oneshot"),
                prop("ExecStart", [[ENV, [ENV], False]]),
                prop("Environment", []),
                prop("StandardInput", "null"),
                prop("StandardOutputFileToTruncate", str(record)),
                prop("StandardError", "journal"),
                prop("User", NOBODY),
                prop("Group", NOBODY),
                prop("CapabilityBoundingSet", 0),
                prop("NoNewPrivileges", True),
                prop("Slice", slice_name),
                prop("CollectMode", "inactive-or-failed"),
            ],
        )
        for kind in KINDS
    ]


def parse_record(text: str) -> UnitEnd:
    """The recorder's environment: PID 1's MONITOR_* values (the rest is ignored)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("MONITOR_"):
            fields[key.removeprefix("MONITOR_")] = value
    return UnitEnd.from_fields(fields)
