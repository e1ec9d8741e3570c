from __future__ import annotations

import pytest

from joblet_agent.units_of_measure import format_cpuset, parse_cpuset, parse_duration, parse_size


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
