"""The remote API through the real joblet.socket: mutual TLS, roles, logs, many clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from joblet_agent.pki.store import Pki
from rnx.client import Client
from rnx.errors import RnxError
from tests import tls_request
from tests.integration.conftest import sh, unit_property

PKI_DIR = Path("/etc/joblet/pki")
ADDRESS = "localhost:50051"
ROLES = ("reader", "developer", "maintainer", "admin")


@pytest.fixture(scope="session")
def pki() -> Pki:
    pki = Pki(PKI_DIR)
    if not (PKI_DIR / "ca.crt").exists():
        pki.init()
        # The agent read the PKI at start; it serves TCP once restarted.
        sh("systemctl", "restart", "joblet.service")
    return pki


@pytest.fixture(scope="session")
def certs(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """rnx-config.yml per role (plus a second developer), fresh names for this session."""
    run = uuid.uuid4().hex[:6]
    out: dict[str, str] = {}
    for role in (*ROLES, "developer2"):
        name = f"{role}-{run}"
        path = tmp_path_factory.mktemp(name) / "cfg"
        out[role] = str(pki.issue_client(name, role.rstrip("2"), out_dir=path, address=ADDRESS))
    return out


@pytest.fixture
def admin_local() -> Iterator[Client]:
    with Client(socket="/run/joblet/joblet.sock") as c:
        yield c


def rnx(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rnx", "--config", config, *args], capture_output=True, text=True, timeout=60, check=False
    )


# -- acceptance -------------------------------------------------------------------------------


def test_developer_runs_a_job_over_tcp(certs: dict[str, str]) -> None:
    result = rnx(certs["developer"], "job", "run", "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    assert rnx(certs["developer"], "job", "run", "--", "sh", "-c", "exit 3").returncode == 3


def test_owner_is_the_certificate_cn(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as client:
        job = client.run(["true"])
        assert job.owner.startswith("cert:developer-")


# -- the TLS matrix ---------------------------------------------------------------------------


def client_dir(pki: Pki, tmp: Path, *, name: str | None = None, **validity: Any) -> str:
    name = name or f"t-{uuid.uuid4().hex[:6]}"
    return str(pki.issue_client(name, "developer", out_dir=tmp / "c", address=ADDRESS, **validity))


def refused(config: str, alert: str) -> subprocess.CompletedProcess[str]:
    """rnx is refused (exit 6), and so is a raw TLS client with the same certificate: with the
    `alert` only the agent sends (rnx words a reset from its own reading of the certificate)."""
    result = rnx(config, "job", "list")
    assert result.returncode == 6, (result.returncode, result.stderr)
    bundle = Path(config).parent
    ctx = tls_request.context(bundle / "ca.crt", bundle / "client.crt", bundle / "client.key")
    answer = tls_request.get("localhost", 50051, ctx)
    assert (answer.status_line, answer.alert) == (None, alert), answer
    return result


@pytest.mark.parametrize("tls13", [True, False], ids=["tls1.3", "tls1.2"])
def test_no_client_certificate_is_refused_by_the_agent(
    pki: Pki, certs: dict[str, str], tls13: bool
) -> None:
    """A raw TLS client: the refusal is the agent's alert, not a reset or rnx's own check; the same
    socket path with a certificate gets 200 (a broken TLS endpoint fails both halves)."""
    bundle = Path(certs["reader"]).parent
    with_cert = tls_request.context(
        bundle / "ca.crt", bundle / "client.crt", bundle / "client.key", tls13=tls13
    )
    assert tls_request.get("localhost", 50051, with_cert).status_line == "HTTP/1.1 200 OK"
    answer = tls_request.get(
        "localhost", 50051, tls_request.context(bundle / "ca.crt", tls13=tls13)
    )
    assert answer.status_line is None, answer
    assert answer.alert == tls_request.NO_CERTIFICATE_ALERTS[tls13], answer


def test_certificate_from_another_ca_is_refused(pki: Pki, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other-pki")
    other.init()
    config = other.issue_client("stranger", "admin", out_dir=tmp_path / "c", address=ADDRESS)
    shutil.copy(PKI_DIR / "ca.crt", config.parent / "ca.crt")  # trust the real agent
    # Either the agent's TLS alert ("unknown ca") or the client's own check says it.
    message = refused(str(config), "TLSV1_ALERT_UNKNOWN_CA").stderr
    assert "does not trust your client certificate's CA" in message or (
        "not issued by the CA in your ca.crt" in message
    ), message


def test_expired_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    config = client_dir(
        pki, tmp_path, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)
    )
    assert "has expired" in refused(config, "SSLV3_ALERT_CERTIFICATE_EXPIRED").stderr


def test_not_yet_valid_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    config = client_dir(
        pki, tmp_path, not_before=now + timedelta(days=1), not_after=now + timedelta(days=10)
    )
    assert "not yet valid" in refused(config, "SSLV3_ALERT_BAD_CERTIFICATE").stderr


def test_revoked_certificate_is_refused_without_restart(pki: Pki, tmp_path: Path) -> None:
    name = f"revokee-{uuid.uuid4().hex[:6]}"
    config = client_dir(pki, tmp_path, name=name)
    assert rnx(config, "job", "list").returncode == 0
    pki.revoke(name)
    assert "revoked" in refused(config, "SSLV3_ALERT_CERTIFICATE_REVOKED").stderr


def test_certificate_whose_unit_is_not_a_role_is_forbidden(pki: Pki, tmp_path: Path) -> None:
    config = Path(client_dir(pki, tmp_path))
    # Same CA, but OU "intern": only `pki client` refuses unknown roles, so sign one by hand.
    ca = pki._load_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = ca.sign_client(
        key,
        "mallory",
        "intern",
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )
    (config.parent / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (config.parent / "client.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    result = rnx(str(config), "job", "list")
    assert result.returncode == 6
    assert "'intern' is not a Joblet role" in result.stderr


# -- roles (every route against every role: test_rbac_matrix.py) -------------------------------


def test_developers_cannot_touch_others_jobs(certs: dict[str, str], admin_local: Client) -> None:
    with Client(config=certs["developer2"]) as owner:
        job = owner.run(["sleep", "60"])
    try:
        with Client(config=certs["developer"]) as other:
            for action in (other.stop, other.delete):
                with pytest.raises(RnxError) as info:
                    action(job.id)
                assert info.value.status == 403
                assert "only its owner" in info.value.message
    finally:
        admin_local.stop(job.id)


def test_someone_elses_upload_is_not_found(
    certs: dict[str, str], admin_local: Client, tmp_path: Path
) -> None:
    """An upload is its announcer's: another developer and an admin can neither run a job on it
    nor send it again (its id is not theirs: not-found, not 403, so ids cannot be probed); its
    owner then runs a job on the same id."""
    (tmp_path / "mine.txt").write_text("mine\n")
    with Client(config=certs["developer2"]) as owner, Client(config=certs["developer"]) as other:
        upload_id = str(owner.upload([str(tmp_path / "mine.txt")]).id)
        job = {"command": "cat", "args": ["mine.txt"], "upload": upload_id}
        for caller in (other, admin_local):
            with pytest.raises(RnxError) as info:
                caller._call("POST", "/v1/jobs", body=job)
            assert (info.value.status, info.value.code) == (404, "not-found"), info.value
            assert upload_id in info.value.message
            with pytest.raises(RnxError) as info:
                caller._put_stream(
                    f"/v1/uploads/{upload_id}", [b""], content_type="application/x-tar"
                )
            assert (info.value.status, info.value.code) == (404, "not-found"), info.value
        ran = owner.wait(str(owner._call("POST", "/v1/jobs", body=job)["id"]))
        assert (ran.state, list(owner.logs(str(ran.id), follow=False))) == ("COMPLETED", ["mine"])


def journal_cursor() -> str:
    """Where the journal ends now: entries after it are what happens from here on."""
    out = sh("journalctl", "--no-pager", "-n", "0", "--show-cursor")
    return out.rsplit("-- cursor: ", 1)[1].strip()


def test_mutations_leave_one_audit_entry_each(certs: dict[str, str]) -> None:
    cursor = journal_cursor()
    with Client(config=certs["reader"]) as reader, pytest.raises(RnxError):
        reader.run(["true"])
    with Client(config=certs["developer"]) as dev:
        job = dev.run(["true"])

    def entries() -> list[dict[str, str]]:
        out = sh(
            "journalctl", "--no-pager", "--after-cursor", cursor, "-o", "json",
            "--output-fields=AUDIT,AUDIT_CALLER,AUDIT_DECISION,AUDIT_ACTION,JOB_ID",
        )  # fmt: skip
        # Not `AUDIT=1 --after-cursor`: systemd 252's journalctl then finds nothing at all.
        found = (json.loads(line) for line in out.splitlines())
        return [e for e in found if e.get("AUDIT") == "1"]

    deadline = time.monotonic() + 15  # journald's own pace: a bound, not a timing claim
    while not any(e.get("JOB_ID") == job.id for e in entries()) and time.monotonic() < deadline:
        time.sleep(0.2)
    found = entries()
    refused = [e for e in found if e.get("AUDIT_CALLER", "").startswith("cert:reader-")]
    allowed_ = [e for e in found if e.get("JOB_ID") == job.id]
    assert [(e["AUDIT_DECISION"], e["AUDIT_ACTION"]) for e in refused] == [
        ("refused", "POST /v1/jobs")
    ]
    assert [(e["AUDIT_DECISION"], e["AUDIT_ACTION"]) for e in allowed_] == [
        ("allowed", "POST /v1/jobs")
    ]


# -- logs -------------------------------------------------------------------------------------


def test_hundred_thousand_lines_over_tls_complete_and_in_order(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as client:
        job = client.run(["seq", "1", "100000"])
        lines = list(client.logs(job.id, follow=True))
    assert lines == [str(n) for n in range(1, 100001)]


def test_resume_with_last_event_id_loses_and_repeats_nothing(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as client:
        job = client.run(["seq", "1", "20000"])
        got: list[str] = []
        cursor = None
        stream = client._events_once(job.id, follow=True, after=None)
        for event in stream:
            got.append(event.message)
            cursor = event.cursor
            if len(got) == 7777:
                break  # the client goes away mid-stream
        stream.close()
        got += [e.message for e in client.events(job.id, after=cursor) if e.kind == "log"]
    assert got == [str(n) for n in range(1, 20001)]


def test_follow_survives_an_agent_restart(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as client:
        job = client.run(["sh", "-c", "for i in $(seq 1 60); do echo $i; sleep 0.05; done"])
        lines: list[str] = []
        follower = threading.Thread(target=lambda: lines.extend(client.logs(job.id)))
        follower.start()
        time.sleep(1)
        sh("systemctl", "restart", "joblet.service")
        follower.join(timeout=60)
    assert not follower.is_alive()
    assert lines == [str(n) for n in range(1, 61)]


# -- load and crashes -------------------------------------------------------------------------


def test_fifty_concurrent_clients_submit_and_follow(certs: dict[str, str]) -> None:
    def one(n: int) -> tuple[list[str], str]:
        with Client(config=certs["developer"]) as client:
            job = client.run(["echo", f"client {n}"])
            lines = list(client.logs(job.id, follow=True))
            return lines, client.get(job.id).state

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert results == [([f"client {n}"], "COMPLETED") for n in range(50)]


def test_agent_killed_then_next_tls_request_is_served(certs: dict[str, str]) -> None:
    old = unit_property("joblet.service", "MainPID")
    sh("systemctl", "kill", "--signal=KILL", "--kill-who=main", "joblet.service")
    with Client(config=certs["reader"]) as client:
        assert client.health().status == "ok"
    assert unit_property("joblet.service", "MainPID") != old


def test_request_larger_than_the_limit_is_413(certs: dict[str, str]) -> None:
    with Client(config=certs["developer"]) as client, pytest.raises(RnxError) as info:
        client.run(["echo", "x" * (2 * 1024 * 1024)])
    assert info.value.status == 413
    assert info.value.code == "too-large"


def test_only_admins_may_relax_isolation(certs: dict[str, str]) -> None:
    for role in ("developer", "maintainer"):
        with Client(config=certs[role]) as client, pytest.raises(RnxError) as info:
            client.run(["true"], relax=["wx-memory"])
        assert info.value.status == 403
        assert "job.relax-isolation" in info.value.message
    with Client(config=certs["admin"]) as admin:
        job = admin.run(["true"], relax=["wx-memory"])
        assert job.spec.relax == ("wx-memory",)


def test_volume_roles_and_auto_creation(certs: dict[str, str], admin_local: Client) -> None:
    """reader may not make one; a developer may, also by naming one (the design document's
    examples name volumes nobody created), and owns it: another developer may not use it, a
    maintainer may; networks are made by maintainers only."""
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    with Client(config=certs["reader"]) as reader:
        assert name not in {v.name for v in reader.volumes()}
        with pytest.raises(RnxError) as refused:
            reader.create_volume(name, size="16M")
        assert refused.value.status == 403
    with Client(config=certs["developer"]) as dev:
        with pytest.raises(RnxError) as missing:
            dev.run(["true"], network=name)
        assert missing.value.status == 404
        assert f"network {name!r} does not exist" in missing.value.message
        job = dev.run(["sh", "-c", f"echo made > /volumes/{name}/f"], volumes=[name])
        assert job.warnings == (f"volume {name!r} did not exist: created (filesystem, 1024 MiB)",)
        assert dev.wait(job.id).exit_code == 0
    try:
        with Client(config=certs["developer2"]) as other, pytest.raises(RnxError) as refused:
            other.run(["cat", f"/volumes/{name}/f"], volumes=[name])
        assert refused.value.status == 403
        with Client(config=certs["maintainer"]) as maintainer:  # maintainers use anyone's
            job = maintainer.run(["cat", f"/volumes/{name}/f"], volumes=[name])
            assert list(maintainer.logs(job.id)) == ["made"]
    finally:
        admin_local.remove_volume(name)
