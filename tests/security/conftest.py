"""The security tests run against the real agent like tests/integration, with its fixtures:
the sandbox check, the guard against job units left running, and the admin client."""

from __future__ import annotations

from tests.integration.conftest import client, inside_sandbox, no_units_left_behind

__all__ = ["client", "inside_sandbox", "no_units_left_behind"]
