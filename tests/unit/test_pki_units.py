"""The units that keep the PKI sound, held to the code: the CRL renewed well within its lifetime
by a timer the package ships and enables, and the CA's key where joblet.service hides it.
(tests/security/attacks/test_pki_lifecycle.py proves both by effect in the sandbox.)"""

from __future__ import annotations

import configparser
from datetime import timedelta
from pathlib import Path

from joblet_agent.pki.authority import CRL_LIFETIME
from joblet_agent.pki.store import DEFAULT_PKI_DIR, Pki

ROOT = Path(__file__).parents[2]
UNITS = ROOT / "systemd"
DEBIAN = ROOT / "packaging" / "debian"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def test_every_unit_is_shipped() -> None:
    installed = (DEBIAN / "joblet.install").read_text().split()
    for path in UNITS.glob("joblet*.*"):
        if path.suffix in (".service", ".socket", ".slice", ".timer"):
            assert f"systemd/{path.name}" in installed, path.name


def test_the_crl_is_renewed_weekly_by_a_timer_the_package_enables() -> None:
    timer = unit("joblet-crl-renew.timer")
    assert timer["Timer"]["OnCalendar"] == "weekly"
    assert timer["Timer"]["Persistent"] == "yes"  # a renewal missed while off runs at boot
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert timedelta(weeks=1, hours=1) * 3 < CRL_LIFETIME  # three misses still leave a margin
    service = unit("joblet-crl-renew.service")["Service"]
    assert service["ExecStart"] == "/usr/bin/joblet-agent pki renew-crl"
    assert service["ReadWritePaths"] == str(DEFAULT_PKI_DIR)
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd -pjoblet joblet-crl-renew.timer\n" in rules  # enabled, started


def test_joblet_service_hides_the_directory_the_ca_key_is_kept_in() -> None:
    service = (UNITS / "joblet.service").read_text()
    pki = Pki(DEFAULT_PKI_DIR)
    assert pki.ca_key.parent == pki.ca_dir
    hidden = [line for line in service.splitlines() if line.startswith("InaccessiblePaths=")]
    assert hidden == [f"InaccessiblePaths=-{pki.ca_dir} -{pki.legacy_ca_key}"]
    # Made before the agent's namespace is, so a CA made later is hidden too.
    assert f"ExecStartPre=+/usr/bin/install -d -m 0700 {DEFAULT_PKI_DIR} {pki.ca_dir}" in service
