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
    "ExecStart": "a(sasb)",
    "ExecStopPostEx": "a(sasas)",  # (path, argv, flags such as "privileged", "ignore-failure")
    "Environment": "as",
    "EnvironmentFiles": "a(sb)",  # (path, ignore if missing)
    "WorkingDirectory": "s",
    "StandardInput": "s",
    "StandardOutput": "s",
    "StandardError": "s",
    "SyslogIdentifier": "s",
    "Slice": "s",
    "CollectMode": "s",
    "AddRef": "b",
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
    "MemoryMax": "t",
    "MemorySwapMax": "t",
    "TasksMax": "t",
    "IOReadBandwidthMax": "a(st)",
    "IOWriteBandwidthMax": "a(st)",
    "AllowedCPUs": "ay",
    "CPUAffinity": "ay",
    # a job's /work filesystem (units/work_mount.py)
    "What": "s",
    "Options": "s",
    # the job's world (units/sandbox.py)
    "RootDirectory": "s",
    "BindReadOnlyPaths": "a(ssbt)",  # (source, destination, ignore if missing, mount flags)
    "BindPaths": "a(ssbt)",
    "TemporaryFileSystem": "a(ss)",  # (path, mount options)
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
    "PrivatePIDs": "b",
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
    "RestrictAddressFamilies": "(bas)",
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


def _matches(signature: str, value: Any) -> bool:
    match signature:
        case "s":
            return isinstance(value, str)
        case "b":
            return isinstance(value, bool)
        case "t":
            return _is_int(value) and 0 <= value <= _UINT64_MAX
        case "u":
            return _is_int(value) and 0 <= value < 2**32
        case "i":
            return _is_int(value) and -(2**31) <= value < 2**31
        case "ay":
            return isinstance(value, bytes)
        case "as":
            return isinstance(value, list) and all(isinstance(v, str) for v in value)
        case "a(ssbt)":
            return isinstance(value, list) and all(
                isinstance(v, list)
                and len(v) == 4
                and _matches("s", v[0])
                and _matches("s", v[1])
                and _matches("b", v[2])
                and _matches("t", v[3])
                for v in value
            )
        case "a(ss)":
            return isinstance(value, list) and all(
                isinstance(v, list) and len(v) == 2 and _matches("s", v[0]) and _matches("s", v[1])
                for v in value
            )
        case "(bas)":
            return (
                isinstance(value, list)
                and len(value) == 2
                and _matches("b", value[0])
                and _matches("as", value[1])
            )
        case "a(iayu)":
            return isinstance(value, list) and all(
                isinstance(v, list)
                and len(v) == 3
                and _matches("i", v[0])
                and _matches("ay", v[1])
                and _matches("u", v[2])
                for v in value
            )
        case "a(sb)":
            return isinstance(value, list) and all(
                isinstance(v, list) and len(v) == 2 and _matches("s", v[0]) and _matches("b", v[1])
                for v in value
            )
        case "a(st)":
            return isinstance(value, list) and all(
                isinstance(v, list) and len(v) == 2 and _matches("s", v[0]) and _matches("t", v[1])
                for v in value
            )
        case "a(sasas)":
            return isinstance(value, list) and all(
                isinstance(v, list)
                and len(v) == 3
                and isinstance(v[0], str)
                and _matches("as", v[1])
                and _matches("as", v[2])
                for v in value
            )
        case "a(sasb)":
            # dbus-next wants structs as lists, not tuples.
            return isinstance(value, list) and all(
                isinstance(v, list)
                and len(v) == 3
                and isinstance(v[0], str)
                and _matches("as", v[1])
                and isinstance(v[2], bool)
                for v in value
            )
    raise ValueError(f"signature {signature} has no checker")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
