"""rnx's flag values: sizes, durations, counts, KEY=VALUE and the two ways to say a CPU limit.
A bad value is refused by click (exit 2) naming the flag, never sent."""

from __future__ import annotations

import click
import pytest

from rnx import values

MIB = 1024**2


@pytest.mark.parametrize(
    ("text", "bare_unit", "expected"),
    [
        ("512", "M", 512 * MIB),  # --max-memory, --work-size: MB when bare
        ("512M", "M", 512 * MIB),
        ("512m", "M", 512 * MIB),
        ("2G", "M", 2 * 1024**3),
        ("1.5GB", "M", int(1.5 * 1024**3)),
        ("1GiB", "M", 1024**3),
        (" 64 M ", "M", 64 * MIB),
        ("1T", "M", 1024**4),
        ("10485760", "", 10 * MIB),  # --max-iobps: bytes when bare
        ("10K", "", 10 * 1024),
        ("0.5", "", 0),  # under a byte: refused below
    ],
)
def test_sizes(text: str, bare_unit: str, expected: int) -> None:
    if expected == 0:
        with pytest.raises(click.BadParameter, match="must be more than zero"):
            values.size("--max-iobps", text, bare_unit=bare_unit)
        return
    assert values.size("--max-memory", text, bare_unit=bare_unit) == expected


@pytest.mark.parametrize("text", ["lots", "", "-1M", "1X", "1 2", "M", "0x10"])
def test_a_bad_size_names_the_flag_and_what_a_size_is(text: str) -> None:
    with pytest.raises(click.BadParameter) as refused:
        values.size("--max-memory", text, bare_unit="M")
    assert refused.value.param_hint == "--max-memory"
    assert f"{text!r} is not a size; use a number (M when bare)" in refused.value.message


def test_a_size_of_zero_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="'0' must be more than zero"):
        values.size("--work-size", "0", bare_unit="M")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("90", 90.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert values.duration("--timeout", text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5s", "5x", "5 m", "soon", "1e3"])
def test_a_bad_duration_names_the_flag(text: str) -> None:
    with pytest.raises(click.BadParameter) as refused:
        values.duration("--timeout", text)
    assert refused.value.param_hint == "--timeout"
    assert "is not a duration; use seconds or a number with ms, s, m, h or d" in str(refused.value)


def test_positive_numbers() -> None:
    assert values.positive_number("--max-tasks", "64", integer=True) == 64
    assert values.positive_number("--cpus", "0.25", integer=False) == 0.25
    with pytest.raises(click.BadParameter, match=r"'1\.5' is not a whole number"):
        values.positive_number("--max-tasks", "1.5", integer=True)
    with pytest.raises(click.BadParameter, match="'many' is not a number"):
        values.positive_number("--cpus", "many", integer=False)
    with pytest.raises(click.BadParameter, match="'0' must be more than zero"):
        values.positive_number("--max-tasks", "0", integer=True)
    with pytest.raises(click.BadParameter, match="'-2' must be more than zero"):
        values.positive_number("--cpus", "-2", integer=False)


def test_key_value() -> None:
    assert values.key_value("--env", "A=b") == ("A", "b")
    assert values.key_value("--env", "A=") == ("A", "")
    assert values.key_value("--env", "A=b=c") == ("A", "b=c")
    for bad in ("A", "=b", ""):
        with pytest.raises(click.BadParameter, match=f"{bad!r} is not KEY=VALUE") as refused:
            values.key_value("--env", bad)
        assert refused.value.param_hint == "--env"


def test_cpu_limit_in_percent_or_in_cores() -> None:
    assert values.cpu_percent(None, None) is None
    assert values.cpu_percent("150", None) == 150  # percent of one core
    assert values.cpu_percent(None, "0.5") == 50  # cores, as Docker's --cpus
    assert values.cpu_percent(None, "2") == 200
    assert values.cpu_percent(None, "0.001") == 1  # never rounded down to no CPU at all
    with pytest.raises(click.UsageError, match=r"--max-cpu .* or --cpus .*, not both"):
        values.cpu_percent("50", "0.5")
    with pytest.raises(click.BadParameter, match="'half' is not a whole number"):
        values.cpu_percent("half", None)
