"""The Python client of the Joblet API: `Client`, and the typed answers its methods return.

Every answer is a frozen dataclass; `raw` (and `to_dict()`, a copy) is the agent's JSON as
received, with any field this client does not model yet. Reading an answer is strict on the
fields a model has (a missing or mistyped one is RnxError("bad-answer") naming it) and silent
about others, so a newer agent's additions do not break an older client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnx.client.api import Client
    from rnx.client.exec import ExecEnd, ExecResult
    from rnx.client.fields import Model
    from rnx.client.health import Health, HealthLimits, Host, LimitMinimums
    from rnx.client.job import (
        EgressRule,
        Endpoint,
        Job,
        JobDeleted,
        JobEnd,
        JobsDeleted,
        JobSpec,
        JobState,
        Limits,
        Metrics,
        UnitMetrics,
        VolumeMount,
    )
    from rnx.client.job_file import Copied, FileEntry, FileListing
    from rnx.client.log import LogEvent, LogLine
    from rnx.client.network import AttachedJob, Network, NetworkRemoved
    from rnx.client.runtime import (
        Runtime,
        RuntimeList,
        RuntimeMount,
        RuntimeRemoved,
        RuntimeRequirements,
        RuntimeSource,
        RuntimeSummary,
        RuntimeValidation,
    )
    from rnx.client.sandbox import Sandbox
    from rnx.client.schedule import LastRun, Schedule, ScheduleDeleted, ScheduleSpec
    from rnx.client.session import Session
    from rnx.client.share import Share
    from rnx.client.upload import Upload
    from rnx.client.volume import Volume, VolumeRemoved
    from rnx.errors import RnxError

__all__ = [
    "AttachedJob",
    "Client",
    "Copied",
    "EgressRule",
    "Endpoint",
    "ExecEnd",
    "ExecResult",
    "FileEntry",
    "FileListing",
    "Health",
    "HealthLimits",
    "Host",
    "Job",
    "JobDeleted",
    "JobEnd",
    "JobSpec",
    "JobState",
    "JobsDeleted",
    "LastRun",
    "LimitMinimums",
    "Limits",
    "LogEvent",
    "LogLine",
    "Metrics",
    "Model",
    "Network",
    "NetworkRemoved",
    "RnxError",
    "Runtime",
    "RuntimeList",
    "RuntimeMount",
    "RuntimeRemoved",
    "RuntimeRequirements",
    "RuntimeSource",
    "RuntimeSummary",
    "RuntimeValidation",
    "Sandbox",
    "Schedule",
    "ScheduleDeleted",
    "ScheduleSpec",
    "Session",
    "Share",
    "UnitMetrics",
    "Upload",
    "Volume",
    "VolumeMount",
    "VolumeRemoved",
]

# Where each name lives: imported on first use (rnx.client.api says why).
_HOMES = {
    "Client": "api",
    "Model": "fields",
    "RnxError": "rnx.errors",
    **dict.fromkeys(("Health", "HealthLimits", "Host", "LimitMinimums"), "health"),
    **dict.fromkeys(
        ("EgressRule", "Endpoint", "Job", "JobDeleted", "JobEnd", "JobsDeleted", "JobSpec"), "job"
    ),
    **dict.fromkeys(("JobState", "Limits", "Metrics", "UnitMetrics", "VolumeMount"), "job"),
    **dict.fromkeys(("LogEvent", "LogLine"), "log"),
    **dict.fromkeys(("AttachedJob", "Network", "NetworkRemoved"), "network"),
    **dict.fromkeys(
        ("Runtime", "RuntimeList", "RuntimeMount", "RuntimeRemoved", "RuntimeRequirements"),
        "runtime",
    ),
    **dict.fromkeys(("RuntimeSource", "RuntimeSummary", "RuntimeValidation"), "runtime"),
    "Share": "share",
    **dict.fromkeys(("LastRun", "Schedule", "ScheduleDeleted", "ScheduleSpec"), "schedule"),
    "Upload": "upload",
    **dict.fromkeys(("ExecEnd", "ExecResult"), "exec"),
    "Sandbox": "sandbox",
    "Session": "session",
    **dict.fromkeys(("Copied", "FileEntry", "FileListing"), "job_file"),
    **dict.fromkeys(("Volume", "VolumeRemoved"), "volume"),
}


def __getattr__(name: str) -> Any:
    import importlib

    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    module = importlib.import_module(home if "." in home else f"rnx.client.{home}")
    return getattr(module, name)
