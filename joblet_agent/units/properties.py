"""The one table of every unit property Joblet may emit, with its D-Bus signature.

D-Bus types of unit properties do not always follow their unit-file syntax (ProtectSystem is 's',
CPUAffinity 'ay', ExecStart 'a(sasb)'), and a single wrong type fails the whole StartTransientUnit
call inside PID 1 with "Unexpected message contents". So every value is checked here, at translate
time. Signatures come from `busctl introspect org.freedesktop.systemd1 <unit path> <interface>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIGNATURES: dict[str, str] = {
    # identity and execution
    "Description": "s",
    "Type": "s",
    "ExecStart": "a(sasb)",  # (path, argv, ignore failure)
    "ExecStop": "a(sasb)",
    "Environment": "as",
    "EnvironmentFiles": "a(sb)",  # (path, ignore if missing)
    "WorkingDirectory": "s",
    "StandardInput": "s",
    "StandardInputFile": "s",  # StandardInput=file:PATH, opened by PID 1
    "StandardOutput": "s",
    "StandardError": "s",
    "StandardOutputFileToTruncate": "s",  # StandardOutput=truncate:PATH (systemd 248+)
    "SyslogIdentifier": "s",
    "SyslogLevelPrefix": "b",
    "Slice": "s",
    "CollectMode": "s",
    # dependencies (a job's network helpers, units/network.py; its end's, units/end_record.py)
    "Requires": "as",
    "After": "as",
    "JoinsNamespaceOf": "as",
    "OnSuccess": "as",
    "OnFailure": "as",
    "StopWhenUnneeded": "b",
    "RemainAfterExit": "b",
    "BindsTo": "as",
    "PartOf": "as",
    "Wants": "as",
    "Conflicts": "as",
    # a job's exec channel, a listening socket PID 1 passes its init (units/exec_channel.py)
    "Listen": "a(ss)",  # (type, address): ("Stream", "/path")
    "SocketMode": "u",
    "DirectoryMode": "u",
    "RemoveOnStop": "b",
    # a job's deadline, a timer that starts a unit conflicting with it (units/deadline.py)
    "TimersMonotonic": "a(st)",  # (base, microseconds): ("OnActiveUSec", 30000000)
    "AccuracyUSec": "t",
    "RemainAfterElapse": "b",
    # stopping
    "KillMode": "s",
    "KillSignal": "i",
    "SendSIGKILL": "b",
    "TimeoutStopUSec": "t",
    "RuntimeMaxUSec": "t",
    "OOMPolicy": "s",
    # resources
    "CPUAccounting": "b",
    "MemoryAccounting": "b",
    "TasksAccounting": "b",
    "IOAccounting": "b",
    "CPUQuotaPerSecUSec": "t",
    "CPUWeight": "t",  # an owner's slice (units/owner.py)
    "MemoryMax": "t",
    "MemorySwapMax": "t",
    "TasksMax": "t",
    "IOReadBandwidthMax": "a(st)",
    "IOWriteBandwidthMax": "a(st)",
    "AllowedCPUs": "ay",
    "CPUAffinity": "ay",
    # the job's world (units/sandbox.py)
    "RootDirectory": "s",
    "BindReadOnlyPaths": "a(ssbt)",  # (source, destination, ignore if missing, mount flags)
    "BindPaths": "a(ssbt)",
    "TemporaryFileSystem": "a(ss)",  # (path, mount options)
    "MountImages": "a(ssba(ss))",  # (image, where, ignore if missing, [(partition, options)])
    "SupplementaryGroups": "as",
    "RequiresMountsFor": "as",
    "PrivateTmp": "b",
    # a volume's mount unit (units/volume_units.py)
    "What": "s",
    "Where": "s",
    "Options": "s",
    "MountAPIVFS": "b",
    "PrivateDevices": "b",
    "DevicePolicy": "s",
    "ProtectProc": "s",
    "ProcSubset": "s",
    "ProtectSystem": "s",
    "ProtectHome": "s",
    "User": "s",
    "Group": "s",
    "PrivateUsers": "b",
    "PrivatePIDs": "s",  # "yes", "no" or "proc" on the bus (systemd 257); a boolean in unit files
    "NoNewPrivileges": "b",
    "CapabilityBoundingSet": "t",
    "AmbientCapabilities": "t",
    "RestrictSUIDSGID": "b",
    "UMask": "u",
    "KeyringMode": "s",
    "RemoveIPC": "b",
    "PrivateIPC": "b",
    "RestrictNamespaces": "t",  # the namespace types still allowed: 0 = none
    "SystemCallFilter": "(bas)",  # (allow list?, names)
    "SystemCallArchitectures": "as",
    "SystemCallErrorNumber": "i",
    "LockPersonality": "b",
    "MemoryDenyWriteExecute": "b",
    "RestrictRealtime": "b",
    "ProtectKernelTunables": "b",
    "ProtectKernelModules": "b",
    "ProtectKernelLogs": "b",
    "ProtectControlGroups": "b",
    "ProtectClock": "b",
    "ProtectHostname": "b",
    "NotifyAccess": "s",
    "PrivateNetwork": "b",
    "IPAddressDeny": "a(iayu)",  # (address family, address bytes, prefix length)
    "IPAddressAllow": "a(iayu)",
    "RestrictAddressFamilies": "(bas)",
    # a schedule's timer (units/schedule.py)
    "OnCalendar": "s",
    "RandomizedDelayUSec": "t",
    "Persistent": "b",
    "WakeSystem": "b",
    # logging
    "LogRateLimitIntervalUSec": "t",
    "LogRateLimitBurst": "u",
}

_UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    signature: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "signature": self.signature, "value": _jsonable(self.value)}


def _jsonable(value: Any) -> Any:
    """bytes (D-Bus 'ay') as lists of numbers, at any depth: golden files are JSON."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def prop(name: str, value: Any) -> Property:
    """Build a property from the table; a name missing from it or a mistyped value is a bug here."""
    try:
        signature = SIGNATURES[name]
    except KeyError:
        raise ValueError(f"unit property {name!r} is not in the property table") from None
    if not _matches(signature, value):
        raise TypeError(f"unit property {name}: {value!r} does not fit D-Bus signature {signature}")
    return Property(name, signature, value)


_BASIC: dict[str, Any] = {
    "s": lambda v: isinstance(v, str),
    "b": lambda v: isinstance(v, bool),
    "t": lambda v: _is_int(v) and 0 <= v <= _UINT64_MAX,
    "u": lambda v: _is_int(v) and 0 <= v < 2**32,
    "i": lambda v: _is_int(v) and -(2**31) <= v < 2**31,
}


def _matches(signature: str, value: Any) -> bool:
    """Whether a Python value is what dbus-next sends for a D-Bus signature."""
    if signature in _BASIC:
        return bool(_BASIC[signature](value))
    if signature == "ay":
        return isinstance(value, bytes)
    if signature.startswith("a"):
        return isinstance(value, list) and all(_matches(signature[1:], v) for v in value)
    if signature.startswith("(") and signature.endswith(")"):
        # dbus-next wants structs as lists, not tuples.
        members = _split(signature[1:-1])
        return (
            isinstance(value, list)
            and len(value) == len(members)
            and all(_matches(m, v) for m, v in zip(members, value, strict=True))
        )
    raise ValueError(f"signature {signature} has no checker")


def _split(signature: str) -> list[str]:
    """'sasb' -> ['s', 'as', 'b']: the complete types a struct's signature is made of."""
    types, index = [], 0
    while index < len(signature):
        end = index
        while signature[end] == "a":
            end += 1
        if signature[end] == "(":
            depth = 1
            while depth:
                end += 1
                depth += {"(": 1, ")": -1}.get(signature[end], 0)
        types.append(signature[index : end + 1])
        index = end + 1
    return types


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
