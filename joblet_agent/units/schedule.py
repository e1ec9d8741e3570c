"""A schedule's timer: `joblet-sched-<id>.timer`, PID 1's own timer engine, and the unit it
fires, `joblet-sched-<id>.service`. Pure.

The timer's `OnCalendar=` is the schedule's calendar expression (a one-shot job's start time as
one that elapses once). When it elapses, PID 1 starts the service: the host's /usr/bin/true as
`nobody`, no capability, nothing of any job's; it does nothing but end. Its start job's end
(JobRemoved) is how the agent hears of the firing, and it then makes or queues the job itself:
nothing privileged runs with anything a job controls, and the timer starts nothing of a job's.
A firing while no agent listens is found at the agent's start (services/job/timers.py,
services/schedule.py). Timers have no cgroup, so no slice; their service runs in joblet.slice.
`systemctl list-timers 'joblet-*'` lists them.

The id is a job's (a one-shot start time) or a schedule's (recurring); both are UUIDs.
"""

from __future__ import annotations

from joblet_agent.units.properties import Property, prop

PREFIX = "joblet-sched-"
TRUE = "/usr/bin/true"
NOBODY = "65534"


def timer_unit(owner_id: str) -> str:
    return f"{PREFIX}{owner_id}.timer"


def fire_unit(owner_id: str) -> str:
    return f"{PREFIX}{owner_id}.service"


def fired(unit: str) -> str | None:
    """The id a firing service's name carries, or None for another unit."""
    if unit.startswith(PREFIX) and unit.endswith(".service"):
        return unit[len(PREFIX) : -len(".service")]
    return None


def timer_properties(calendar: str, description: str) -> list[Property]:
    """The timer: it fires at each elapse of `calendar`, to the microsecond (systemd's default
    AccuracySec= is a minute, to coalesce wake-ups), never earlier. A firing missed while it
    was not loaded (PID 1 restarted, the host down) is the agent's to find: not Persistent=,
    whose stamp files live outside Joblet's state."""
    return [
        prop("Description", description),
        prop("OnCalendar", calendar),
        prop("AccuracyUSec", 1),
        prop("RandomizedDelayUSec", 0),
        prop("Persistent", False),
        prop("WakeSystem", False),
        # Stays loaded once elapsed (a one-shot's): its LastTriggerUSec says it fired.
        prop("RemainAfterElapse", True),
    ]


def fire_properties(slice_name: str, description: str) -> list[Property]:
    """The unit the timer starts: it ends at once; its JobRemoved is the firing."""
    return [
        prop("Description", description),
        prop("Type", "oneshot"),
        prop("ExecStart", [[TRUE, [TRUE], False]]),
        prop("Environment", []),
        prop("StandardInput", "null"),
        prop("StandardOutput", "null"),
        prop("StandardError", "journal"),
        prop("User", NOBODY),
        prop("Group", NOBODY),
        prop("CapabilityBoundingSet", 0),
        prop("NoNewPrivileges", True),
        # No namespace of its own (PrivateNetwork= and the like): each costs PID 1 tens of
        # milliseconds, and a hundred firings in one second are one after the other in PID 1.
        prop("Slice", slice_name),
    ]
