"""The PKI: files and modes, certificate contents, validation, revocation, and the CLI."""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.pki import authority as pki_module
from joblet_agent.pki import names as pki_names
from joblet_agent.pki.commands import pki as pki_cli
from joblet_agent.pki.store import Pki


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Modes must come from os.open, not from a friendly umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def validity(cert: x509.Certificate) -> timedelta:
    return pki_module.not_valid_after(cert) - pki_module.not_valid_before(cert)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


# --- init ---------------------------------------------------------------------------------


def test_init_writes_keys_0600_in_a_0700_directory(tmp_path: Path, umask_zero: None) -> None:
    authority = Pki(tmp_path / "pki")
    authority.init()
    assert mode(authority.directory) == 0o700
    assert mode(authority.ca_key) == 0o600
    assert mode(authority.server_key) == 0o600
    assert mode(authority.ca_crt) == 0o644
    assert sorted(p.name for p in authority.directory.iterdir()) == [
        "ca",
        "ca.crt",
        "crl.pem",
        "server.crt",
        "server.key",
    ]  # no temporary files left behind
    # The CA's key lives apart, in a directory joblet.service hides from the agent.
    assert (authority.ca_key.parent, mode(authority.ca_key.parent)) == (
        authority.directory / "ca",
        0o700,
    )
    assert [p.name for p in authority.ca_key.parent.iterdir()] == ["ca.key"]


def test_ca_certificate(ca: Pki) -> None:
    cert = load_cert(ca.ca_crt)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == f"Joblet CA {socket.gethostname()}"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert validity(cert) >= timedelta(days=3650)


def test_server_certificate(ca: Pki) -> None:
    cert = load_cert(ca.server_crt)
    dns, ips = sans(cert)
    assert "localhost" in dns
    assert "127.0.0.1" in ips
    assert "::1" in ips
    assert "0.0.0.0" not in ips
    assert "::" not in ips
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert validity(cert) <= timedelta(days=826)


def test_init_adds_extra_names_and_addresses(tmp_path: Path) -> None:
    authority = Pki(tmp_path / "pki")
    authority.init(["Node1.Example.com", "10.1.2.3", "2001:db8::7"])
    dns, ips = sans(load_cert(authority.server_crt))
    assert "node1.example.com" in dns
    assert {"10.1.2.3", "2001:db8::7"} <= set(ips)


@pytest.mark.parametrize("name", ["0.0.0.0", "::", "[::]", "bad_name!", "-x.example"])
def test_init_refuses_bad_extra_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(JobletError) as caught:
        Pki(tmp_path / "pki").init([name])
    assert caught.value.code is ErrorCode.INVALID
    assert "server name" in caught.value.message
    assert repr(name) in caught.value.message
    assert not (tmp_path / "pki").exists()  # refused before anything was written


def test_init_twice_refuses_without_force(ca: Pki) -> None:
    before = ca.ca_crt.read_bytes()
    with pytest.raises(JobletError) as caught:
        ca.init()
    assert caught.value.code is ErrorCode.CONFLICT
    assert "already exists" in caught.value.message
    assert "--force" in caught.value.message
    assert ca.ca_crt.read_bytes() == before


def test_init_force_replaces_the_ca_and_forgets_its_clients(ca: Pki, tmp_path: Path) -> None:
    before = load_cert(ca.ca_crt)
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    ca.init(force=True)
    after = load_cert(ca.ca_crt)
    assert after.public_key() != before.public_key()
    assert after.subject != before.subject  # CA names stay unique across re-creation
    assert ca.list() == []


def test_host_addresses_skip_loopback_link_local_and_unspecified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    links = [
        {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}, {"local": "::1"}]},
        {
            "ifname": "eth0",
            "addr_info": [{"local": "192.0.2.10"}, {"local": "fe80::1"}, {"local": "2001:db8::5"}],
        },
    ]

    def fake_run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(args, 0, json.dumps(links).encode(), b"")

    def fake_getaddrinfo(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(0, 0, 0, "", ("127.0.1.1", 0)), (0, 0, 0, "", ("0.0.0.0", 0))]

    monkeypatch.setattr("joblet_agent.pki.names.subprocess.run", fake_run)
    monkeypatch.setattr("joblet_agent.pki.names.socket.getaddrinfo", fake_getaddrinfo)
    assert pki_names.host_addresses() == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("2001:db8::5"),
    ]


def test_host_addresses_without_the_ip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError("ip")

    monkeypatch.setattr("joblet_agent.pki.names.subprocess.run", missing)
    assert all(not a.is_loopback for a in pki_names.host_addresses())


# --- client certificates ----------------------------------------------------------------


def test_issue_client_writes_a_ready_to_use_bundle(
    ca: Pki, tmp_path: Path, umask_zero: None
) -> None:
    out = tmp_path / "alice"
    config = ca.issue_client("alice", "developer", out_dir=out, address="node1.example.com:50051")
    assert config == out / "rnx-config.yml"
    assert mode(out / "client.key") == 0o600
    node = socket.gethostname().split(".")[0]
    assert yaml.safe_load(config.read_text()) == {
        "default": node,
        "nodes": {
            node: {
                "address": "node1.example.com:50051",
                "cert": "client.crt",
                "key": "client.key",
                "ca": "ca.crt",
            }
        },
    }
    for name in ("cert", "key", "ca"):
        assert (config.parent / yaml.safe_load(config.read_text())["nodes"][node][name]).is_file()
    assert (out / "ca.crt").read_bytes() == ca.ca_crt.read_bytes()


def test_rnx_config_text_has_the_documented_shape() -> None:
    assert pki_names.rnx_config("node1", "node1.example.com:50051").decode() == (
        "default: node1\n"
        "nodes:\n"
        "  node1:\n"
        '    address: "node1.example.com:50051"\n'
        '    cert: "client.crt"\n'
        '    key: "client.key"\n'
        '    ca: "ca.crt"\n'
    )


def test_rnx_config_quotes_hostnames_yaml_would_misread() -> None:
    loaded = yaml.safe_load(pki_names.rnx_config("1234", "h:1"))
    assert loaded["default"] == "1234"
    assert list(loaded["nodes"]) == ["1234"]


def test_client_certificate_contents(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "maintainer", out_dir=tmp_path / "alice", days=30)
    cert = load_cert(tmp_path / "alice" / "client.crt")
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "maintainer"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Joblet"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert timedelta(days=30) <= validity(cert)
    assert (ca.issued_dir / f"{cert.serial_number:x}.pem").read_bytes() == (
        tmp_path / "alice" / "client.crt"
    ).read_bytes()


def test_client_goes_to_cwd_name_by_default(
    ca: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert ca.issue_client("bob", "reader") == tmp_path / "bob" / "rnx-config.yml"


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"name": "Alice"}, "name", "'Alice'"),
        ({"name": ""}, "name", "''"),
        ({"name": "-alice"}, "name", "'-alice'"),
        ({"name": "a" * 64}, "name", "'" + "a" * 64 + "'"),
        ({"name": "al ice"}, "name", "'al ice'"),
        ({"role": "root"}, "role", "'root'"),
        ({"days": 0}, "days", "0"),
        ({"days": 3651}, "days", "3651"),
        ({"address": "node1"}, "address", "'node1'"),
        ({"address": "node1:99999"}, "address", "'node1:99999'"),
    ],
)
def test_issue_client_refuses_bad_values(
    ca: Pki, tmp_path: Path, kwargs: dict[str, Any], field: str, value: str
) -> None:
    args: dict[str, Any] = {"name": "alice", "role": "reader", "out_dir": tmp_path / "out"}
    args.update(kwargs)
    with pytest.raises(JobletError) as caught:
        ca.issue_client(**args)
    assert caught.value.code is ErrorCode.INVALID
    assert caught.value.message.startswith(f"{field}: {value} is not valid; ")
    assert not (tmp_path / "out").exists()
    assert ca.list() == []


def test_role_error_lists_the_roles(ca: Pki, tmp_path: Path) -> None:
    with pytest.raises(JobletError, match="reader, developer, maintainer, admin"):
        ca.issue_client("alice", "root", out_dir=tmp_path / "out")


def test_issue_client_does_not_overwrite_a_key(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    with pytest.raises(JobletError) as caught:
        ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    assert caught.value.code is ErrorCode.CONFLICT


def test_a_ca_key_where_older_versions_kept_it_moves_out_of_the_agents_sight(ca: Pki) -> None:
    key = ca.ca_key.read_bytes()
    ca.ca_key.rename(ca.legacy_ca_key)  # the layout of an older version
    ca.renew_crl()  # what the timer runs
    assert not ca.legacy_ca_key.exists()
    assert ca.ca_key.read_bytes() == key
    assert mode(ca.ca_key) == 0o600
    ca.ca_key.rename(ca.legacy_ca_key)
    ca.issue_client("alice", "reader", out_dir=ca.directory.parent / "alice")
    assert (ca.legacy_ca_key.exists(), ca.ca_key.read_bytes()) == (False, key)


def test_two_different_ca_keys_are_never_merged(ca: Pki) -> None:
    ca.legacy_ca_key.write_bytes(b"another key")
    with pytest.raises(JobletError, match="two different CA keys"):
        ca.revoke("nobody-at-all")
    assert ca.legacy_ca_key.read_bytes() == b"another key"


def test_init_force_keeps_the_key_directory_itself(ca: Pki) -> None:
    """joblet.service hides ca/ from the agent as the directory it was at the agent's start: a
    new directory would be in the agent's sight until its next restart."""
    before = ca.ca_key.parent.stat().st_ino
    ca.init(force=True)
    assert ca.ca_key.parent.stat().st_ino == before


@pytest.mark.parametrize("name", ["root", "nobody", "admin", "developer", "joblet-u7", "daemon"])
def test_reserved_names_are_refused(ca: Pki, tmp_path: Path, name: str) -> None:
    with pytest.raises(JobletError, match="reserved") as refused:
        ca.issue_client(name, "developer", out_dir=tmp_path / name)
    assert refused.value.code is ErrorCode.INVALID
    assert not (tmp_path / name).exists()
    assert ca.list() == []


def test_issue_client_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(JobletError) as caught:
        Pki(tmp_path / "none").issue_client("alice", "admin", out_dir=tmp_path / "alice")
    assert caught.value.code is ErrorCode.CONFIG
    assert caught.value.hint is not None
    assert "pki init" in caught.value.hint


def test_validity_window_overrides(ca: Pki, tmp_path: Path) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime(2020, 2, 1, tzinfo=UTC)
    ca.issue_client("old", "reader", out_dir=tmp_path / "old", not_before=start, not_after=end)
    [issued] = ca.list()
    assert (issued.not_before, issued.not_after) == (start, end)
    assert issued.status(datetime.now(UTC)) == pki_module.CertStatus.EXPIRED
    with pytest.raises(JobletError, match="not_after"):
        ca.issue_client("bad", "reader", out_dir=tmp_path / "bad", not_before=end, not_after=start)


# --- revocation ---------------------------------------------------------------------------


def crl_of(authority: Pki) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(authority.crl.read_bytes())


def test_new_crl_is_empty_signed_and_valid_for_30_days(ca: Pki) -> None:
    crl = crl_of(ca)
    assert len(crl) == 0
    ca_key = load_cert(ca.ca_crt).public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_key)
    next_update = pki_module.crl_next_update(crl)
    assert next_update is not None
    left = next_update - datetime.now(UTC)
    assert timedelta(days=29) < left <= timedelta(days=30)


def test_revoke_by_name_revokes_every_certificate_of_that_name(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "admin", out_dir=tmp_path / "a1")
    ca.issue_client("alice", "reader", out_dir=tmp_path / "a2")
    ca.issue_client("bob", "reader", out_dir=tmp_path / "bob")
    revoked = ca.revoke("alice")
    assert sorted(c.role for c in revoked) == ["admin", "reader"]
    assert all(c.revoked for c in revoked)
    assert {c.name: c.revoked for c in ca.list() if c.name == "bob"} == {"bob": False}
    assert {c.serial_number for c in crl_of(ca)} == {int(c.serial, 16) for c in revoked}


def test_revoke_by_serial_and_crl_number_grows(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "admin", out_dir=tmp_path / "a1")
    ca.issue_client("alice", "reader", out_dir=tmp_path / "a2")
    target = next(c for c in ca.list() if c.role == "reader")
    assert [c.serial for c in ca.revoke(target.serial.upper())] == [target.serial]
    assert {c.role: c.revoked for c in ca.list()} == {"admin": False, "reader": True}
    number = crl_of(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == 2
    ca.revoke("alice")  # the remaining one; the first entry stays in the CRL
    assert len(crl_of(ca)) == 2


def test_concurrent_revokes_all_land_in_the_crl(ca: Pki, tmp_path: Path) -> None:
    names = [f"user{i}" for i in range(8)]
    for name in names:
        ca.issue_client(name, "reader", out_dir=tmp_path / name)
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(ca.revoke, names))
    assert len(crl_of(ca)) == len(names)
    assert all(c.revoked for c in ca.list())


def test_revoke_unknown_and_twice(ca: Pki, tmp_path: Path) -> None:
    with pytest.raises(JobletError) as caught:
        ca.revoke("nobody")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "'nobody'" in caught.value.message
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    ca.revoke("alice")
    with pytest.raises(JobletError) as again:
        ca.revoke("alice")
    assert again.value.code is ErrorCode.CONFLICT


def test_renew_crl_keeps_entries(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    ca.revoke("alice")
    next_update = ca.renew_crl()
    crl = crl_of(ca)
    assert pki_module.crl_next_update(crl) == next_update.replace(microsecond=0)
    assert len(crl) == 1
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3


def test_date_accessors_are_aware_with_and_without_the_utc_properties(
    ca: Pki, tmp_path: Path
) -> None:
    # cryptography >= 42 has *_utc properties; Debian 12's 38 has only the naive ones, in UTC.
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    ca.revoke("alice")
    cert = load_cert(tmp_path / "alice" / "client.crt")
    crl = crl_of(ca)
    [entry] = list(crl)
    aware = [
        pki_module.not_valid_before(cert),
        pki_module.not_valid_after(cert),
        pki_module.crl_next_update(crl),
        pki_module.revocation_date(entry),
    ]
    assert all(d is not None and d.utcoffset() == timedelta(0) for d in aware)
    naive = datetime(2030, 1, 2, 3, 4, 5)
    old: Any = SimpleNamespace(
        not_valid_before=naive, not_valid_after=naive, next_update=naive, revocation_date=naive
    )
    expected = naive.replace(tzinfo=UTC)
    assert pki_module.not_valid_before(old) == expected
    assert pki_module.not_valid_after(old) == expected
    assert pki_module.crl_next_update(old) == expected
    assert pki_module.revocation_date(old) == expected
    no_next_update: Any = SimpleNamespace(next_update=None)
    assert pki_module.crl_next_update(no_next_update) is None


def test_list_uses_aware_datetimes(ca: Pki, tmp_path: Path) -> None:
    ca.issue_client("alice", "admin", out_dir=tmp_path / "alice")
    [cert] = ca.list()
    assert cert.not_before.tzinfo is not None
    assert cert.not_after.tzinfo is not None
    assert cert.status(datetime.now(UTC)) == pki_module.CertStatus.VALID


# --- the click commands -------------------------------------------------------------------


def run(*args: str) -> Any:
    # click < 8.2 (Debian 12 has 8.1.3) mixes stderr into stdout unless mix_stderr=False; 8.2
    # always keeps them apart and removed the parameter.
    separate: dict[str, Any] = {}
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        separate["mix_stderr"] = False
    return CliRunner(**separate).invoke(pki_cli, list(args))


def test_cli_init_client_revoke_list(tmp_path: Path) -> None:
    pki_dir = str(tmp_path / "pki")
    assert run("init", "--dir", pki_dir, "--name", "node1.example.com").exit_code == 0
    again = run("init", "--dir", pki_dir)
    assert again.exit_code == 1
    assert "--force" in again.stderr
    assert run("init", "--dir", pki_dir, "--force").exit_code == 0

    for name in ("alice", "bob"):
        result = run(
            "client",
            "--dir",
            pki_dir,
            "--name",
            name,
            "--role",
            "reader",
            "--out",
            str(tmp_path / name),
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == f"{tmp_path / name / 'rnx-config.yml'}\n"

    revoked = run("revoke", "--dir", pki_dir, "alice")
    assert revoked.exit_code == 0
    assert "revoked alice" in revoked.stdout
    assert "closes their open connections within 2 s" in revoked.stderr

    table = run("list", "--dir", pki_dir)
    assert table.exit_code == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["alice"][-1] == "revoked"
    assert rows["bob"][-1] == "valid"

    listed = json.loads(run("list", "--dir", pki_dir, "--json").stdout)
    assert {c["name"]: c["revoked"] for c in listed} == {"alice": True, "bob": False}


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["client", "--name", "Bad", "--role", "reader"], 2, "name: 'Bad' is not valid"),
        (["client", "--name", "x", "--role", "boss"], 2, "'boss' is not one of"),
        (["client", "--name", "x", "--role", "reader", "--days", "0"], 2, "days: 0 is not valid"),
        (["revoke", "nobody"], 1, "no client certificate named or with serial 'nobody'"),
        (["init", "--name", "0.0.0.0"], 2, "server name: '0.0.0.0' is not valid"),
    ],
)
def test_cli_errors_go_to_stderr_with_exit_codes(
    ca: Pki, tmp_path: Path, args: list[str], code: int, text: str
) -> None:
    result = run(*args, "--dir", str(ca.directory))
    assert result.exit_code == code
    assert text in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("kind", ["symlink", "writable by others", "a file"])
def test_a_bundle_goes_only_into_a_directory_of_ones_own(
    ca: Pki, tmp_path: Path, kind: str
) -> None:
    """Security-audit L8: `pki client` as root in a world-writable directory."""
    out = tmp_path / "alice"
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    elif kind == "writable by others":
        out.mkdir()
        out.chmod(0o777)
    else:
        out.write_text("")
    with pytest.raises(JobletError, match="a directory of your own") as refused:
        ca.issue_client("alice", "reader", out_dir=out)
    assert refused.value.code is ErrorCode.INVALID
    assert ca.list() == []  # refused before anything was issued
    assert not (tmp_path / "elsewhere" / "client.key").exists()


def test_a_bundle_may_go_into_an_existing_private_directory(ca: Pki, tmp_path: Path) -> None:
    out = tmp_path / "alice"
    out.mkdir(mode=0o700)
    assert ca.issue_client("alice", "reader", out_dir=out) == out / "rnx-config.yml"
