"""Tiers: everything under tests/integration and tests/security is `integration` (real systemd,
in the sandbox), but for the `before_reboot` and `after_reboot` tests, which `make integration`
runs right before and after it reboots the sandbox; everything under tests/slow is `slow`
(built runtimes, in the sandbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"
SECURITY_DIR = Path(__file__).parent / "security"
SLOW_DIR = Path(__file__).parent / "slow"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(item.path).parents
        rebooting = item.get_closest_marker("after_reboot") or item.get_closest_marker(
            "before_reboot"
        )
        if (INTEGRATION_DIR in parents or SECURITY_DIR in parents) and not rebooting:
            item.add_marker(pytest.mark.integration)
        if SLOW_DIR in parents:
            item.add_marker(pytest.mark.slow)
