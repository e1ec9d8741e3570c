from __future__ import annotations

import pytest

from joblet_agent.domain.quantities import format_cpuset, parse_cpuset, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512", 512),
        (4096, 4096),
        ("1K", 1024),
        ("512M", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5GB", 3 * 1024**3 // 2),
        ("64MiB", 64 * 1024**2),
        ("1t", 1024**4),
        (" 8 M ", 8 * 1024**2),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_bare_size_takes_default_unit() -> None:
    assert parse_size("512", default_unit="M") == 512 * 1024**2


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5", "12X", "1e9", True])
def test_bad_sizes(text: str | bool) -> None:
    with pytest.raises(ValueError, match="512M"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("90", 90),
        (2.5, 2.5),
        ("250ms", 0.25),
        ("1d", 86400),
    ],
)
def test_durations(text: str | float, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-1s", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "cpus", "canonical"),
    [
        ("0", (0,), "0"),
        ("0-1,3", (0, 1, 3), "0-1,3"),
        ("3,1,2", (1, 2, 3), "1-3"),
        ("0-0", (0,), "0"),
        (" 1 , 4-5", (1, 4, 5), "1,4-5"),
    ],
)
def test_cpusets(text: str, cpus: tuple[int, ...], canonical: str) -> None:
    assert parse_cpuset(text) == cpus
    assert format_cpuset(cpus) == canonical


@pytest.mark.parametrize("text", ["", ",", "1-", "a", "1-2-3", "3-1", "-1"])
def test_bad_cpusets(text: str) -> None:
    with pytest.raises(ValueError, match="CPU list"):
        parse_cpuset(text)


# -- bounds: what a request can make these parsers do (audit H6, api-fuzz findings 3 and 8) --

HOST_CPUS = (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("text", "first_missing"),
    [
        ("0-4294967295", 4),  # 4.3 billion CPUs: refused before one is counted
        ("0-" + "9" * 10, 4),
        ("4000000000-4294967295", 4000000000),
        ("1,9", 9),
    ],
)
def test_a_cpu_past_the_hosts_is_refused_before_any_set_is_built(
    text: str, first_missing: int
) -> None:
    with pytest.raises(ValueError, match=f"CPU {first_missing} does not exist; this host has 0-3"):
        parse_cpuset(text, available=HOST_CPUS)


def test_a_gap_in_the_hosts_cpus_is_named() -> None:
    with pytest.raises(ValueError, match="CPU 1 does not exist; this host has 0,2-3"):
        parse_cpuset("0-2", available=(0, 2, 3))
    assert parse_cpuset("2-3,0", available=(0, 2, 3)) == (0, 2, 3)


@pytest.mark.parametrize("text", ["0-" + "9" * 11, "9" * 5000, "٣", "²"])
def test_cpu_numbers_are_a_few_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError, match="CPU list"):
        parse_cpuset(text, available=HOST_CPUS)


@pytest.mark.parametrize(
    "text",
    ["9" * 400, "9" * 400 + "G", "0." + "0" * 400 + "1", 2**63, -1, 10**5000, "9" * 20 + "T"],
    ids=["400-digits", "400-G", "400-decimals", "2^63", "-1", "5000-digit-int", "20-digits-T"],
)
def test_sizes_have_a_bound_and_never_overflow(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_the_largest_size_is_int64() -> None:
    assert parse_size(2**63 - 1) == 2**63 - 1
    assert parse_size("8388607T") == 8388607 * 1024**4


@pytest.mark.parametrize(
    "value",
    ["9" * 400 + "s", "9" * 20 + "d", float("nan"), float("inf"), 1e300, 10**400],
    ids=["400-digits", "20-digit-days", "nan", "inf", "1e300", "400-digit-int"],
)
def test_durations_are_finite_and_bounded(value: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)
