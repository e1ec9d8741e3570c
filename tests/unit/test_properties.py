"""The property table catches mistyped values at translate time, not inside PID 1."""

from __future__ import annotations

import pytest

from joblet_agent.adapters.systemd_dbus import unit_path
from joblet_agent.units.job import cpu_mask, exec_escape
from joblet_agent.units.properties import prop


def test_unknown_property_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not in the property table"):
        prop("MemoryMaximum", 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MemoryMax", -1),
        ("MemoryMax", "64M"),
        ("MemoryMax", True),
        ("SendSIGKILL", 1),
        ("ExecStart", [("/bin/true", ["true"], False)]),  # dbus-next needs lists, not tuples
        ("IOReadBandwidthMax", [["/dev/block/8:0"]]),
        ("CPUAffinity", [1, 2]),
        ("LogRateLimitBurst", 2**32),
    ],
)
def test_mistyped_values_are_refused(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=name):
        prop(name, value)


def test_cpu_mask_bits() -> None:
    assert cpu_mask((0,)) == b"\x01"
    assert cpu_mask((0, 1, 3)) == b"\x0b"
    assert cpu_mask((9,)) == b"\x00\x02"


def test_exec_escape_keeps_dollars_literal() -> None:
    assert exec_escape("kill -9 $$; echo ${HOME}") == "kill -9 $$$$; echo $${HOME}"


@pytest.mark.parametrize("unit", ["joblet-job-0b7d3c1e-5a4f.service", "a_b.slice", "x@1.service"])
def test_unit_path_is_a_valid_object_path(unit: str) -> None:
    path = unit_path(unit)
    assert all(c.isalnum() or c in "/_" for c in path)


def test_unit_path_matches_systemd() -> None:
    assert unit_path("joblet-job-1.service") == (
        "/org/freedesktop/systemd1/unit/joblet_2djob_2d1_2eservice"
    )
