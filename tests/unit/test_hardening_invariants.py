"""The job profile's must-haves, checked on the properties of every golden request as translate
renders them now: independent of what the golden files hold, so a regenerated golden file
(UPDATE_GOLDEN=1) cannot make a weaker profile pass. docs/security.md is the list.

Relaxations are the only exceptions, and each is asserted where it applies: `wx-memory`
(MemoryDenyWriteExecute, admin only) and a network (IP families, no IPAddressDeny=any).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_translate_golden import GOLDEN, render

# name -> the one value it must have (the D-Bus value as the golden rows write it).
ALWAYS: dict[str, Any] = {
    "NoNewPrivileges": True,
    "CapabilityBoundingSet": 0,
    "AmbientCapabilities": 0,
    "PrivateUsers": True,
    "RestrictSUIDSGID": True,
    "UMask": 0o077,
    "KeyringMode": "private",
    "PrivateIPC": True,
    "RemoveIPC": True,
    "RestrictNamespaces": 0,  # none allowed
    "SystemCallArchitectures": ["native"],
    "SystemCallErrorNumber": 1,  # EPERM
    "LockPersonality": True,
    "RestrictRealtime": True,
    "ProtectKernelTunables": True,
    "ProtectKernelModules": True,
    "ProtectKernelLogs": True,
    "ProtectControlGroups": True,
    "ProtectClock": True,
    "ProtectHostname": True,
    "NotifyAccess": "none",
    "PrivateDevices": True,
    "DevicePolicy": "closed",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateNetwork": True,
    "MemorySwapMax": 0,
    "StandardInput": "null",
    # journald: the documented rate (jobs.log_lines per jobs.log_interval: 100,000 a minute,
    # tests/security/test_exhaustion.py's flood), `<0>` kept as text, never as a priority.
    "LogRateLimitIntervalUSec": 60_000_000,
    "LogRateLimitBurst": 100_000,
    "SyslogLevelPrefix": False,
    "KillMode": "control-group",
    "SendSIGKILL": True,
}
# The seccomp deny list must hold at least these (docs/security.md, "What it may ask").
DENIED = {
    "@privileged",
    "@resources",
    "@keyring",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
}
# Nothing privileged runs in a job's own unit (docs/security.md): no commands but the job's.
NEVER = {"ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload",
         "PermissionsStartOnly", "DynamicUser", "NetworkNamespacePath"}  # fmt: skip
IP_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6"}
NO_IP = [[2, [0] * 4, 0], [10, [0] * 16, 0]]  # IPAddressDeny=any, both families
DEFAULT_MAX_TASKS = 512


def cases() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


def properties(path: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    case = json.loads(path.read_text())
    rows, _ = render(case)
    values: dict[str, list[Any]] = {}
    for name, _signature, value in rows:
        values.setdefault(name, []).append(value)
    return case, values


def one(values: dict[str, list[Any]], name: str) -> Any:
    assert len(values.get(name, [])) == 1, f"{name}: {values.get(name)}"
    return values[name][0]


def relaxed(case: dict[str, Any]) -> set[str]:
    """What the request or its runtime relaxes (the runtime's runtime.yml may say so too)."""
    runtime = case.get("runtime", {}).get("runtime.yml", {})
    return set(case["request"].get("relax", [])) | set(runtime.get("relax", []))


@pytest.mark.parametrize("path", cases(), ids=lambda p: p.stem)
def test_every_job_keeps_the_profile(path: Path) -> None:
    case, values = properties(path)
    for name, wanted in ALWAYS.items():
        assert one(values, name) == wanted, name
    assert not NEVER & set(values), NEVER & set(values)
    assert str(one(values, "User")).startswith("joblet-u"), "jobs run as a user of the pool"
    allow, deny = values["SystemCallFilter"]
    assert allow == [True, ["@system-service"]]
    assert deny[0] is False and set(deny[1]) >= DENIED, deny
    tasks = one(values, "TasksMax")
    requested = case["request"].get("limits", {}).get("max_tasks")
    assert 0 < tasks <= (requested or DEFAULT_MAX_TASKS), "fork bombs stop at TasksMax"
    assert one(values, "MemoryDenyWriteExecute") is ("wx-memory" not in relaxed(case))


@pytest.mark.parametrize("path", cases(), ids=lambda p: p.stem)
def test_the_network_is_none_unless_asked_and_never_more_than_ip(path: Path) -> None:
    case, values = properties(path)
    allowed, families = one(values, "RestrictAddressFamilies")
    assert allowed is True
    if case["request"].get("network", "none") == "none":
        assert families == ["AF_UNIX"]
        assert one(values, "IPAddressDeny") == NO_IP
    else:
        assert set(families) <= IP_FAMILIES, families  # never packet, netlink or raw families
        assert one(values, "JoinsNamespaceOf"), "a network job joins its own helper's namespace"


def test_the_cases_cover_none_a_network_and_a_relaxation() -> None:
    """So that the conditional branches above are exercised at all."""
    seen = [json.loads(p.read_text()) for p in cases()]
    assert any(c["request"].get("network", "none") == "none" for c in seen)
    assert any(c["request"].get("network", "none") != "none" for c in seen)
    assert any(relaxed(c) for c in seen)
    assert any(not relaxed(c) for c in seen)
