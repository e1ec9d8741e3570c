"""Golden tests: a job request in, the exact unit properties out (tests/unit/golden/*.json):
those of its start, and those set once its program runs ("running_properties").

Regenerate after an intended change with UPDATE_GOLDEN=1 (a rewritten file fails that run), review
the diff, run again. What the profile must hold whatever the files say:
test_hardening_invariants.py.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Network
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from joblet_agent.domain.config import AgentConfig, parse_config
from joblet_agent.domain.job import JobSpec
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.network import Endpoint, Network, NetworkMode, link_name
from joblet_agent.domain.runtime import parse_runtime
from joblet_agent.domain.runtime_binding import InstalledRuntime, bind_runtime
from joblet_agent.domain.user import pool_user
from joblet_agent.units.exec_channel import HOST_INIT
from joblet_agent.units.job import running_limits, translate
from joblet_agent.units.network import NO_NETWORK, JobNetwork
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from tests.unit.hosts import BARE_V2_HOST, HYBRID_HOST

GOLDEN = Path(__file__).parent / "golden"
JOB_ID = "0b7d3c1e-5a4f-4c2b-9e8d-1f2a3b4c5d6e"
ROOT = PurePosixPath("/var/lib/joblet/roots/0123456789abcdef")


def render(case: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]]]:
    config = parse_config(case.get("config", {}), "golden") if "config" in case else AgentConfig()
    spec = parse_job_request(case["request"], config.jobs, HYBRID_HOST).spec
    runtime = None
    if "runtime" in case:  # an installed runtime: its directory and runtime.yml
        runtime = InstalledRuntime(
            parse_runtime(case["runtime"]["runtime.yml"]),
            PurePosixPath(case["runtime"]["directory"]),
        )
        spec, _ = bind_runtime(spec, runtime)
    paths = JobPaths.for_job(PurePosixPath(config.jobs_dir), JOB_ID)
    executable = case.get("executable", "/usr/bin/" + spec.command)
    props = translate(
        JOB_ID,
        spec,
        config,
        HYBRID_HOST,
        paths,
        root=ROOT,
        user=pool_user(config.jobs, 7),
        executable=executable,
        init=HOST_INIT,
        network=_network(case, spec, config),
        runtime=runtime,
    )
    running = running_limits(spec.limits)
    return [_row(p) for p in props], [_row(p) for p in running]


def _row(p: Property) -> list[Any]:
    return [p.name, p.signature, p.to_json()["value"]]


def _network(case: dict[str, Any], spec: JobSpec, config: AgentConfig) -> JobNetwork:
    """A case's "network": the network and the place on it the service would have given."""
    given = case.get("network")
    if given is None:
        return NO_NETWORK
    network = Network(given["name"], IPv4Network(given["cidr"]), internal=given["internal"])
    endpoint = Endpoint(network.name, given["address"], given["hostname"], link_name(JOB_ID))
    return JobNetwork(
        mode=NetworkMode.of(spec.network),
        network=network,
        endpoint=endpoint,
        egress=spec.allow_egress,
        files=PurePosixPath(config.state_dir) / "networks" / network.name,
    )


def dump(case: dict[str, Any]) -> str:
    """The request as pretty JSON, then one property per line: readable diffs in review."""
    keys = ("properties", "running_properties")
    head = json.dumps({k: v for k, v in case.items() if k not in keys}, indent=2)
    out = head[:-2]
    for key in keys:
        lines = ",\n".join("    " + json.dumps(p) for p in case[key])
        out += f',\n  "{key}": [\n' + lines + "\n  ]"
    return out + "\n}\n"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    actual, running = render(case)
    if os.environ.get("UPDATE_GOLDEN") and (actual, running) != (
        case["properties"],
        case["running_properties"],
    ):
        case["properties"], case["running_properties"] = actual, running
        path.write_text(dump(case))
        pytest.fail(f"rewrote {path.name}: review its diff, then run again without UPDATE_GOLDEN")
    assert actual == case["properties"]
    assert running == case["running_properties"]


def test_golden_files_exist() -> None:
    assert len(list(GOLDEN.glob("*.json"))) == 9  # a file lost or added is seen here


def test_private_pids_on_systemd_257_is_the_string_pid_1_reads() -> None:
    """systemd 257 types PrivatePIDs as a string on the bus; a boolean fails the whole start."""
    config = AgentConfig()
    spec = parse_job_request({"command": "true"}, config.jobs, BARE_V2_HOST).spec
    paths = JobPaths.for_job(PurePosixPath(config.jobs_dir), JOB_ID)
    props = translate(
        JOB_ID, spec, config, BARE_V2_HOST, paths, root=ROOT, user=pool_user(config.jobs, 7),
        executable="/usr/bin/true", init=HOST_INIT,
    )  # fmt: skip
    assert [(p.signature, p.value) for p in props if p.name == "PrivatePIDs"] == [("s", "yes")]
    assert not [p for p in translate(
        JOB_ID, spec, config, HYBRID_HOST, paths, root=ROOT, user=pool_user(config.jobs, 7),
        executable="/usr/bin/true", init=HOST_INIT,
    ) if p.name == "PrivatePIDs"]  # fmt: skip
