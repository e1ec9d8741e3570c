"""The Joblet PKI: a private CA, the agent's server certificate, client certificates and a CRL.

One directory (default /etc/joblet/pki, mode 0700) holds everything:

    ca.key, ca.crt          the CA (EC P-256, 10 years); signs everything below
    server.key, server.crt  the agent's certificate; SANs are this host's names and addresses
    crl.pem                 revoked client certificates; rewritten on revoke, re-read by the agent
    issued/<serial>.pem     every client certificate issued, so it can be listed and revoked

The CRL is the one record of what is revoked. Only `cryptography` is used (no openssl CLI), keys are
created 0600 and every file is replaced atomically, so the agent never reads half a file.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from joblet_agent.errors import ErrorCode, JobletError, invalid
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

DEFAULT_PKI_DIR = Path("/etc/joblet/pki")
DEFAULT_PORT = 50051
ROLES = ("reader", "developer", "maintainer", "admin")
ORGANIZATION = "Joblet"

CA_LIFETIME = timedelta(days=3650)
# 825 days: the longest server-certificate lifetime that macOS/iOS TLS clients still accept.
SERVER_LIFETIME = timedelta(days=825)
CRL_LIFETIME = timedelta(days=30)
DEFAULT_CLIENT_DAYS = 365
MAX_CLIENT_DAYS = 3650
# Certificates start a little in the past so a client whose clock lags still accepts the server.
_CLOCK_SKEW = timedelta(minutes=5)

_CLIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"

    @property
    def style(self) -> str:
        """The rich style `pki list` shows this status in."""
        return {"valid": "green", "revoked": "bold red", "expired": "yellow"}.get(self, "cyan")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    name: str  # the subject CN
    role: str  # the subject OU
    serial: str  # lower-case hex, no separators
    not_before: datetime
    not_after: datetime
    revoked: bool

    def status(self, now: datetime) -> CertStatus:
        if self.revoked:
            return CertStatus.REVOKED
        if now < self.not_before:
            return CertStatus.NOT_YET_VALID
        return CertStatus.EXPIRED if now > self.not_after else CertStatus.VALID


class Pki:
    """The PKI directory. Every method reads what it needs from disk; nothing is cached."""

    def __init__(self, directory: Path = DEFAULT_PKI_DIR) -> None:
        self.directory = directory
        self.ca_key = directory / "ca.key"
        self.ca_crt = directory / "ca.crt"
        self.server_key = directory / "server.key"
        self.server_crt = directory / "server.crt"
        self.crl = directory / "crl.pem"
        self.issued_dir = directory / "issued"

    def init(self, extra_names: Sequence[str] = (), *, force: bool = False) -> None:
        """Create the CA, the server certificate and an empty CRL."""
        # Bad names fail before the disk is touched.
        dns_names, addresses = server_names(extra_names)
        with _disk_errors(self.directory):
            self._refuse_existing(force=force)
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _exclusive(self.directory):
                self._refuse_existing(force=force)  # again: another init may have won the lock
                ca = _Ca.create(datetime.now(UTC))
                server_key = ec.generate_private_key(ec.SECP256R1())
                server_cert = ca.sign_server(server_key, dns_names, addresses)
                write_atomic(self.ca_key, _key_pem(ca.key), mode=0o600, durable=True)
                write_atomic(self.ca_crt, _cert_pem(ca.cert), mode=0o644, durable=True)
                write_atomic(self.server_key, _key_pem(server_key), mode=0o600, durable=True)
                write_atomic(self.server_crt, _cert_pem(server_cert), mode=0o644, durable=True)
                self._write_crl(ca, [], number=1)
                if force:
                    self._forget_issued()
        logger.info("pki: created a CA and a server certificate in %s", self.directory)

    def issue_client(
        self,
        name: str,
        role: str,
        *,
        days: int = DEFAULT_CLIENT_DAYS,
        out_dir: Path | None = None,
        address: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Path:
        """Issue a client certificate and write it with the CA and an rnx-config.yml into out_dir.

        `not_before`/`not_after` override the validity window (tests make expired certificates).
        Returns the path of rnx-config.yml.
        """
        _check_client(name, role, days)
        address = address if address is not None else f"{host_fqdn()}:{DEFAULT_PORT}"
        _check_address(address)
        now = datetime.now(UTC)
        start = not_before if not_before is not None else now - _CLOCK_SKEW
        end = not_after if not_after is not None else now + timedelta(days=days)
        if end <= start:
            raise invalid("not_after", end.isoformat(), f"must be later than {start.isoformat()}")
        out = out_dir if out_dir is not None else Path.cwd() / name
        with _disk_errors(self.directory):
            if (out / "client.key").exists():
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"{out / 'client.key'} already exists",
                    hint="choose another --out directory",
                )
            ca = self._load_ca()
            key = ec.generate_private_key(ec.SECP256R1())
            cert = ca.sign_client(key, name, role, not_before=start, not_after=end)
            # Recorded before it leaves the PKI: anything handed out can be listed and revoked.
            with _exclusive(self.directory):
                self.issued_dir.mkdir(mode=0o700, exist_ok=True)
                record = self.issued_dir / f"{_serial(cert)}.pem"
                write_atomic(record, _cert_pem(cert), mode=0o644, durable=True)
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(out / "client.key", _key_pem(key), mode=0o600, durable=True)
            write_atomic(out / "client.crt", _cert_pem(cert), mode=0o644, durable=True)
            write_atomic(out / "ca.crt", _cert_pem(ca.cert), mode=0o644, durable=True)
            config = out / "rnx-config.yml"
            node = socket.gethostname().split(".")[0]
            write_atomic(config, rnx_config(node, address), mode=0o644, durable=True)
        logger.info("pki: issued %s (%s), serial %s, into %s", name, role, _serial(cert), out)
        return config

    def revoke(self, name_or_serial: str) -> list[IssuedCert]:
        """Revoke every live certificate issued to this name (or with this serial)."""
        serial = _parse_serial(name_or_serial)
        with _disk_errors(self.directory), _exclusive(self.directory):
            matches = [
                c for c in self.list() if name_or_serial == c.name or serial == int(c.serial, 16)
            ]
            if not matches:
                raise JobletError(
                    ErrorCode.NOT_FOUND,
                    f"no client certificate named or with serial {name_or_serial!r}",
                    hint="`joblet-agent pki list` shows the issued certificates",
                )
            live = [c for c in matches if not c.revoked]
            if not live:
                raise JobletError(ErrorCode.CONFLICT, f"{name_or_serial!r} is already revoked")
            crl = self._load_crl()
            now = datetime.now(UTC)
            entries = [(r.serial_number, revocation_date(r)) for r in crl]
            entries += [(int(c.serial, 16), now) for c in live]
            self._write_crl(self._load_ca(), entries, number=_crl_number(crl) + 1)
        for cert in live:
            logger.info("pki: revoked %s (%s), serial %s", cert.name, cert.role, cert.serial)
        return [replace(c, revoked=True) for c in live]

    def renew_crl(self) -> datetime:
        """Re-sign the CRL with the same entries; returns its new next-update time.

        The agent refuses every client once the CRL's next update has passed, so something must
        call this well within CRL_LIFETIME when nothing has been revoked (revoke renews it too).
        """
        with _disk_errors(self.directory), _exclusive(self.directory):
            crl = self._load_crl()
            entries = [(r.serial_number, revocation_date(r)) for r in crl]
            return self._write_crl(self._load_ca(), entries, number=_crl_number(crl) + 1)

    def list(self) -> builtins.list[IssuedCert]:
        """Every issued client certificate, oldest first, with its revocation state from the CRL."""
        with _disk_errors(self.directory):
            revoked = {r.serial_number for r in self._load_crl()} if self.crl.exists() else set()
            certs = [_issued(path.read_bytes(), revoked) for path in self.issued_dir.glob("*.pem")]
        return sorted(certs, key=lambda c: (c.not_before, c.name, c.serial))

    def _refuse_existing(self, *, force: bool) -> None:
        if force:
            return
        for path in (self.ca_crt, self.ca_key, self.server_crt, self.server_key):
            if path.exists():
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"{path} already exists; use --force to replace the CA and server certificate",
                    hint="--force also invalidates every client certificate issued so far",
                )

    def _forget_issued(self) -> None:
        # Certificates of the replaced CA can no longer authenticate: listing them would mislead.
        for path in self.issued_dir.glob("*.pem"):
            path.unlink()

    def _load_ca(self) -> _Ca:
        if not self.ca_crt.exists():
            raise JobletError(
                ErrorCode.CONFIG,
                f"no CA in {self.directory}",
                hint="run `joblet-agent pki init` first",
            )
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise JobletError(ErrorCode.CONFIG, f"{self.ca_key} is not an EC private key")
        return _Ca(key, x509.load_pem_x509_certificate(self.ca_crt.read_bytes()))

    def _load_crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.crl.read_bytes())

    def _write_crl(
        self, ca: _Ca, entries: Sequence[tuple[int, datetime]], *, number: int
    ) -> datetime:
        crl = ca.sign_crl(entries, number=number)
        write_atomic(
            self.crl, crl.public_bytes(serialization.Encoding.PEM), mode=0o644, durable=True
        )
        return crl_next_update(crl) or datetime.now(UTC)


# Aware-datetime accessors. cryptography 42 added the *_utc properties and deprecated the naive
# ones; Debian 12 ships cryptography 38, which has only the naive ones (in UTC). Use these instead
# of either attribute so the code runs on both. (The annotated locals keep mypy strict on both.)
def not_valid_before(cert: x509.Certificate) -> datetime:
    if hasattr(cert, "not_valid_before_utc"):
        aware: datetime = cert.not_valid_before_utc
        return aware
    return cert.not_valid_before.replace(tzinfo=UTC)  # cryptography < 42


def not_valid_after(cert: x509.Certificate) -> datetime:
    if hasattr(cert, "not_valid_after_utc"):
        aware: datetime = cert.not_valid_after_utc
        return aware
    return cert.not_valid_after.replace(tzinfo=UTC)  # cryptography < 42


def crl_next_update(crl: x509.CertificateRevocationList) -> datetime | None:
    if hasattr(crl, "next_update_utc"):
        aware: datetime | None = crl.next_update_utc
        return aware
    naive = crl.next_update  # cryptography < 42
    return naive.replace(tzinfo=UTC) if naive is not None else None


def revocation_date(entry: x509.RevokedCertificate) -> datetime:
    if hasattr(entry, "revocation_date_utc"):
        aware: datetime = entry.revocation_date_utc
        return aware
    return entry.revocation_date.replace(tzinfo=UTC)  # cryptography < 42


def rnx_config(node: str, address: str) -> bytes:
    """rnx-config.yml; the paths are relative to the file's own directory."""
    text = (
        f"default: {_yaml_str(node)}\n"
        "nodes:\n"
        f"  {_yaml_str(node)}:\n"
        f"    address: {json.dumps(address)}\n"
        '    cert: "client.crt"\n'
        '    key: "client.key"\n'
        '    ca: "ca.crt"\n'
    )
    return text.encode()


def server_names(extra: Sequence[str] = ()) -> tuple[list[str], list[_IP]]:
    """The server certificate's DNS and IP SANs: this host's names and addresses, then `extra`."""
    dns = [socket.gethostname().lower(), host_fqdn().lower(), "localhost"]
    ips: list[_IP] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    ips += host_addresses()
    for value in extra:
        parsed = _parse_server_name(value)
        if isinstance(parsed, str):
            dns.append(parsed)
        else:
            ips.append(parsed)
    return list(dict.fromkeys(n for n in dns if _is_dns_name(n))), list(dict.fromkeys(ips))


def host_fqdn() -> str:
    """getfqdn(), unless it found a name of something else (often "localhost" via /etc/hosts)."""
    hostname = socket.gethostname()
    fqdn = socket.getfqdn(hostname)
    return fqdn if fqdn.split(".")[0] == hostname.split(".")[0] else hostname


def host_addresses() -> list[_IP]:
    """This host's routable addresses, best effort and without any network traffic."""
    found = _addresses_from_ip_command() + _addresses_from_resolver()
    return [a for a in dict.fromkeys(found) if _is_host_address(a)]


def _addresses_from_ip_command() -> list[_IP]:
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, timeout=5, check=True)
        links = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found: list[_IP] = []
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            with contextlib.suppress(ValueError, TypeError):
                found.append(ipaddress.ip_address(info["local"]))
    return found


def _addresses_from_resolver() -> list[_IP]:
    # Only the local resolver: the host's own name is in /etc/hosts or nss-myhostname.
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    found: list[_IP] = []
    for *_, sockaddr in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
    return found


def _is_host_address(address: _IP) -> bool:
    # Link-local addresses need a zone the client cannot put in a URL usefully; loopback is added
    # explicitly; 0.0.0.0 and :: name no host at all.
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    )


def _parse_server_name(value: str) -> str | _IP:
    text = value.strip().lower()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        if not _is_dns_name(text):
            raise invalid("server name", value, "give a DNS name or an IP address") from None
        return text
    if address.is_unspecified:
        raise invalid("server name", value, "0.0.0.0 and :: name no host; give a real address")
    return address


def _is_dns_name(text: str) -> bool:
    return 0 < len(text) <= 253 and all(_DNS_LABEL.match(label) for label in text.split("."))


def _check_client(name: str, role: str, days: int) -> None:
    if not _CLIENT_NAME.match(name):
        raise invalid("name", name, "use 1-63 of a-z 0-9 . _ - starting with a letter or digit")
    if role not in ROLES:
        raise invalid("role", role, f"use one of {', '.join(ROLES)}")
    if not 1 <= days <= MAX_CLIENT_DAYS:
        raise invalid("days", days, f"use 1 to {MAX_CLIENT_DAYS}")


def _check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise invalid("address", address, "use HOST:PORT, e.g. node1.example.com:50051")


@dataclass(frozen=True, slots=True)
class _Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, now: datetime) -> _Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        # A random serialNumber keeps CA names unique: a re-created CA, or another host's CA of the
        # same hostname, would otherwise look like the issuer and confuse OpenSSL's error messages.
        subject = x509.Name(
            [
                *_name(f"Joblet CA {socket.gethostname()}"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
            ]
        )
        cert = (
            _builder(subject, subject, key.public_key(), now - _CLOCK_SKEW, now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def sign_server(
        self, key: ec.EllipticCurvePrivateKey, dns_names: Sequence[str], addresses: Sequence[_IP]
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(a) for a in addresses]
        return (
            self._leaf(key, _name(dns_names[0]), now - _CLOCK_SKEW, now + SERVER_LIFETIME)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def sign_client(
        self,
        key: ec.EllipticCurvePrivateKey,
        name: str,
        role: str,
        *,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        return (
            self._leaf(key, _name(name, role), not_before, not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def sign_crl(
        self, entries: Sequence[tuple[int, datetime]], *, number: int
    ) -> x509.CertificateRevocationList:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _CLOCK_SKEW)
            .next_update(now + CRL_LIFETIME)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        for serial, when in entries:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, hashes.SHA256())

    def _leaf(
        self,
        key: ec.EllipticCurvePrivateKey,
        subject: x509.Name,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.CertificateBuilder:
        return (
            _builder(subject, self.cert.subject, key.public_key(), not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(self._authority_key_id(), critical=False)
        )

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issued(pem: bytes, revoked: set[int]) -> IssuedCert:
    cert = x509.load_pem_x509_certificate(pem)
    return IssuedCert(
        name=_attribute(cert, NameOID.COMMON_NAME),
        role=_attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME),
        serial=_serial(cert),
        not_before=not_valid_before(cert),
        not_after=not_valid_after(cert),
        revoked=cert.serial_number in revoked,
    )


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _parse_serial(text: str) -> int | None:
    """A serial as `pki list` prints it, or as openssl does (upper case, colons)."""
    try:
        return int(text.replace(":", ""), 16)
    except ValueError:
        return None


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _yaml_str(value: str) -> str:
    # A host named "1234" or "yes" would otherwise load as a number or a boolean.
    return value if yaml.safe_load(value) == value else json.dumps(value)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Serialise writers on the directory: two revokes at once must not lose a revocation."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _disk_errors(directory: Path) -> Iterator[None]:
    """The one place where file-system and parse errors become JobletErrors."""
    try:
        yield
    except PermissionError as exc:
        raise JobletError(
            ErrorCode.CONFIG,
            f"{exc.filename or directory}: permission denied",
            hint="the PKI belongs to root; run as root",
        ) from exc
    except OSError as exc:
        raise JobletError(
            ErrorCode.CONFIG, f"{exc.filename or directory}: {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:  # a PEM file that does not parse
        raise JobletError(ErrorCode.CONFIG, f"{directory}: unreadable PKI file: {exc}") from exc
