"""Fixtures shared by unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from joblet_agent.pki.store import Pki


@pytest.fixture
def ca(tmp_path: Path) -> Pki:
    """A fresh PKI (CA, server certificate, empty CRL) in a temporary directory."""
    authority = Pki(tmp_path / "pki")
    authority.init()
    return authority
