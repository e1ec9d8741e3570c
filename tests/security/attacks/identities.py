"""Who a test's rnx-config.yml is: the owner the agent records for it, and certificates made
outside `joblet-agent pki client` (as if issued before a rule existed)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from joblet_agent.pki.authority import Authority, cert_pem, key_pem
from joblet_agent.pki.names import rnx_config
from tests.integration.conftest import sh

ADDRESS = "localhost:50051"


def certificate_name(config: str) -> str:
    """The CN of the certificate an rnx-config.yml (of `pki client`) presents."""
    pem = (Path(config).parent / "client.crt").read_bytes()
    names = x509.load_pem_x509_certificate(pem).subject
    return str(names.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def owner_of(config: str) -> str:
    """The owner the agent records for a certificate's jobs, volumes and networks."""
    return f"cert:{certificate_name(config)}"


def forged_bundle(ca_key: Path, ca_crt: Path, out: Path, name: str, role: str) -> str:
    """A client bundle signed by the CA directly, bypassing `pki client`'s checks: what a
    certificate issued before a name was reserved looks like. Returns its rnx-config.yml."""
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = Authority(key, x509.load_pem_x509_certificate(ca_crt.read_bytes()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = ca.sign_client(
        client_key,
        name,
        role,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )
    out.mkdir(mode=0o700, parents=True)
    (out / "client.key").write_bytes(key_pem(client_key))
    (out / "client.crt").write_bytes(cert_pem(cert))
    (out / "ca.crt").write_bytes(ca_crt.read_bytes())
    (out / "rnx-config.yml").write_bytes(rnx_config("sandbox", ADDRESS))
    return str(out / "rnx-config.yml")


def audit_entries(since: str, **match: str) -> list[dict[str, str]]:
    """The agent's audit entries since `since` (journalctl's format) whose fields match."""
    time.sleep(0.3)  # the agent's journal stream is asynchronous
    out = sh(
        "journalctl", "--no-pager", "AUDIT=1", "--since", since, "-o", "json",
        "--output-fields=AUDIT_CALLER,AUDIT_ROLE,AUDIT_DECISION,AUDIT_ACTION,AUDIT_STATUS,JOB_ID",
    )  # fmt: skip
    entries = [json.loads(line) for line in out.splitlines()]
    return [e for e in entries if all(e.get(k) == v for k, v in match.items())]


def now_for_journal() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 1))
