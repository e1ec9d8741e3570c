"""The slow tier runs inside the sandbox like the integration tests, with their guards
(tests/conftest.py marks everything here `slow`)."""

from __future__ import annotations

from tests.integration.conftest import inside_sandbox, no_units_left_behind

__all__ = ["inside_sandbox", "no_units_left_behind"]
