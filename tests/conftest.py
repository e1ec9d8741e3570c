"""Tiers: everything under tests/integration is `integration` (real systemd, in the sandbox),
but for the `after_reboot` tests, which run only after `make integration` rebooted the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents and not item.get_closest_marker(
            "after_reboot"
        ):
            item.add_marker(pytest.mark.integration)
