"""The certificate authority itself: keys, certificates and the CRL, made and read with
`cryptography` (no openssl CLI). pki/store.py keeps them in their directory."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from joblet_agent.pki.names import IP

ORGANIZATION = "Joblet"


CA_LIFETIME = timedelta(days=3650)


# 825 days: the longest server-certificate lifetime that macOS/iOS TLS clients still accept.
SERVER_LIFETIME = timedelta(days=825)


CRL_LIFETIME = timedelta(days=30)


# Certificates start a little in the past so a client whose clock lags still accepts the server.
CLOCK_SKEW = timedelta(minutes=5)


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


@dataclass(frozen=True, slots=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, now: datetime) -> Authority:
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
            _builder(subject, subject, key.public_key(), now - CLOCK_SKEW, now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def sign_server(
        self, key: ec.EllipticCurvePrivateKey, dns_names: Sequence[str], addresses: Sequence[IP]
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(a) for a in addresses]
        return (
            self._leaf(key, _name(dns_names[0]), now - CLOCK_SKEW, now + SERVER_LIFETIME)
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
            .last_update(now - CLOCK_SKEW)
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


def issued_cert(pem: bytes, revoked: set[int]) -> IssuedCert:
    cert = x509.load_pem_x509_certificate(pem)
    return IssuedCert(
        name=_attribute(cert, NameOID.COMMON_NAME),
        role=_attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME),
        serial=serial_of(cert),
        not_before=not_valid_before(cert),
        not_after=not_valid_after(cert),
        revoked=cert.serial_number in revoked,
    )


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def parse_serial(text: str) -> int | None:
    """A serial as `pki list` prints it, or as openssl does (upper case, colons)."""
    try:
        return int(text.replace(":", ""), 16)
    except ValueError:
        return None


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
