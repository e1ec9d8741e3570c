"""The Joblet PKI: a private CA, the agent's server certificate, client certificates and a CRL.

One directory (default /etc/joblet/pki, mode 0700) holds everything:

    ca/ca.key               the CA's private key, in a directory of its own (0700) that the
                            agent never sees (joblet.service: InaccessiblePaths=); never
                            removed or replaced, so a key written into it later stays hidden
    ca.crt                  the CA (EC P-256, 10 years); signs everything below
    server.key, server.crt  the agent's certificate; SANs are this host's names and addresses
    crl.pem                 revoked client certificates; rewritten on revoke, re-read by the agent
    issued/<serial>.pem     every client certificate issued, so it can be listed and revoked

Older versions kept ca.key beside ca.crt; every command that changes the directory moves it
into ca/ first (the Debian package's postinst and the CRL timer run one).

The CRL is the one record of what is revoked. Only `cryptography` is used (no openssl CLI), keys are
created 0600 and every file is replaced atomically, so the agent never reads half a file.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from joblet_agent.errors import ErrorCode, JobletError, invalid
from joblet_agent.files import write_atomic
from joblet_agent.pki.authority import (
    CLOCK_SKEW,
    Authority,
    IssuedCert,
    cert_pem,
    crl_next_update,
    crl_number,
    issued_cert,
    key_pem,
    parse_serial,
    revocation_date,
    serial_of,
)
from joblet_agent.pki.names import (
    DEFAULT_PORT,
    check_address,
    check_client,
    host_fqdn,
    rnx_config,
    server_names,
)

logger = logging.getLogger(__name__)


DEFAULT_PKI_DIR = Path("/etc/joblet/pki")


DEFAULT_CLIENT_DAYS = 365


class Pki:
    """The PKI directory. Every method reads what it needs from disk; nothing is cached."""

    def __init__(self, directory: Path = DEFAULT_PKI_DIR) -> None:
        self.directory = directory
        self.ca_dir = directory / "ca"
        self.ca_key = self.ca_dir / "ca.key"
        self.legacy_ca_key = directory / "ca.key"
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
                self._move_legacy_key()
                self._refuse_existing(force=force)  # again: another init may have won the lock
                ca = Authority.create(datetime.now(UTC))
                server_key = ec.generate_private_key(ec.SECP256R1())
                server_cert = ca.sign_server(server_key, dns_names, addresses)
                self.ca_dir.mkdir(mode=0o700, exist_ok=True)  # never removed: see the docstring
                write_atomic(self.ca_key, key_pem(ca.key), mode=0o600, durable=True)
                write_atomic(self.ca_crt, cert_pem(ca.cert), mode=0o644, durable=True)
                write_atomic(self.server_key, key_pem(server_key), mode=0o600, durable=True)
                write_atomic(self.server_crt, cert_pem(server_cert), mode=0o644, durable=True)
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
        check_client(name, role, days)
        address = address if address is not None else f"{host_fqdn()}:{DEFAULT_PORT}"
        check_address(address)
        now = datetime.now(UTC)
        start = not_before if not_before is not None else now - CLOCK_SKEW
        end = not_after if not_after is not None else now + timedelta(days=days)
        if end <= start:
            raise invalid("not_after", end.isoformat(), f"must be later than {start.isoformat()}")
        out = out_dir if out_dir is not None else Path.cwd() / name
        with _disk_errors(self.directory):
            _check_bundle_directory(out)
            if (out / "client.key").exists():
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"{out / 'client.key'} already exists",
                    hint="choose another --out directory",
                )
            if self.legacy_ca_key.exists():
                with _exclusive(self.directory):
                    self._move_legacy_key()
            ca = self._load_ca()
            key = ec.generate_private_key(ec.SECP256R1())
            cert = ca.sign_client(key, name, role, not_before=start, not_after=end)
            # Recorded before it leaves the PKI: anything handed out can be listed and revoked.
            with _exclusive(self.directory):
                self.issued_dir.mkdir(mode=0o700, exist_ok=True)
                record = self.issued_dir / f"{serial_of(cert)}.pem"
                write_atomic(record, cert_pem(cert), mode=0o644, durable=True)
            try:
                out.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                _check_bundle_directory(out)  # made meanwhile: by whom?
            write_atomic(out / "client.key", key_pem(key), mode=0o600, durable=True)
            write_atomic(out / "client.crt", cert_pem(cert), mode=0o644, durable=True)
            write_atomic(out / "ca.crt", cert_pem(ca.cert), mode=0o644, durable=True)
            config = out / "rnx-config.yml"
            node = socket.gethostname().split(".")[0]
            write_atomic(config, rnx_config(node, address), mode=0o644, durable=True)
        logger.info("pki: issued %s (%s), serial %s, into %s", name, role, serial_of(cert), out)
        return config

    def revoke(self, name_or_serial: str) -> list[IssuedCert]:
        """Revoke every live certificate issued to this name (or with this serial)."""
        serial = parse_serial(name_or_serial)
        with _disk_errors(self.directory), _exclusive(self.directory):
            self._move_legacy_key()
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
            self._write_crl(self._load_ca(), entries, number=crl_number(crl) + 1)
        for cert in live:
            logger.info("pki: revoked %s (%s), serial %s", cert.name, cert.role, cert.serial)
        return [replace(c, revoked=True) for c in live]

    def renew_crl(self) -> datetime:
        """Re-sign the CRL with the same entries; returns its new next-update time.

        The agent refuses every client once the CRL's next update has passed, so something must
        call this well within CRL_LIFETIME when nothing has been revoked (revoke renews it too).
        """
        with _disk_errors(self.directory), _exclusive(self.directory):
            self._move_legacy_key()
            crl = self._load_crl()
            entries = [(r.serial_number, revocation_date(r)) for r in crl]
            return self._write_crl(self._load_ca(), entries, number=crl_number(crl) + 1)

    def list(self) -> builtins.list[IssuedCert]:
        """Every issued client certificate, oldest first, with its revocation state from the CRL."""
        with _disk_errors(self.directory):
            revoked = {r.serial_number for r in self._load_crl()} if self.crl.exists() else set()
            certs = [
                issued_cert(path.read_bytes(), revoked) for path in self.issued_dir.glob("*.pem")
            ]
        return sorted(certs, key=lambda c: (c.not_before, c.name, c.serial))

    def _refuse_existing(self, *, force: bool) -> None:
        if force:
            return
        for path in (
            self.ca_crt,
            self.ca_key,
            self.legacy_ca_key,
            self.server_crt,
            self.server_key,
        ):
            if path.exists():
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"{path} already exists; use --force to replace the CA and server certificate",
                    hint="--force also invalidates every client certificate issued so far",
                )

    def _move_legacy_key(self) -> None:
        """ca.key where older versions kept it (beside what the agent reads) moves into ca/."""
        if not self.legacy_ca_key.exists():
            return
        self.ca_dir.mkdir(mode=0o700, exist_ok=True)
        if self.ca_key.exists():
            if self.ca_key.read_bytes() != self.legacy_ca_key.read_bytes():
                raise JobletError(
                    ErrorCode.CONFIG,
                    f"two different CA keys: {self.legacy_ca_key} and {self.ca_key}",
                    hint=f"the one that signed {self.ca_crt} stays; remove the other",
                )
            self.legacy_ca_key.unlink()
        else:
            os.rename(self.legacy_ca_key, self.ca_key)
        _sync_directory(self.directory)
        logger.info("pki: moved the CA's key to %s, out of the agent's sight", self.ca_key)

    def _forget_issued(self) -> None:
        # Certificates of the replaced CA can no longer authenticate: listing them would mislead.
        for path in self.issued_dir.glob("*.pem"):
            path.unlink()

    def _load_ca(self) -> Authority:
        if not self.ca_crt.exists():
            raise JobletError(
                ErrorCode.CONFIG,
                f"no CA in {self.directory}",
                hint="run `joblet-agent pki init` first",
            )
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise JobletError(ErrorCode.CONFIG, f"{self.ca_key} is not an EC private key")
        return Authority(key, x509.load_pem_x509_certificate(self.ca_crt.read_bytes()))

    def _load_crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.crl.read_bytes())

    def _write_crl(
        self, ca: Authority, entries: Sequence[tuple[int, datetime]], *, number: int
    ) -> datetime:
        crl = ca.sign_crl(entries, number=number)
        write_atomic(
            self.crl, crl.public_bytes(serialization.Encoding.PEM), mode=0o644, durable=True
        )
        return crl_next_update(crl) or datetime.now(UTC)


def _check_bundle_directory(out: Path) -> None:
    """A client bundle goes into a directory of the caller's own that no one else may write
    (security-audit L8: run as root in a world-writable directory, `./NAME` could be another
    user's directory or link, and its ca.crt or rnx-config.yml swapped before they are handed
    out). One that does not exist yet is made, 0700."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        why = "is not a directory"
    elif st.st_uid != os.geteuid():
        why = f"belongs to uid {st.st_uid}, not to you"
    elif st.st_mode & 0o022:
        why = f"may be written by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if why is not None:
        raise JobletError(
            ErrorCode.INVALID,
            f"out: {out} {why}; a client's key and CA go into a directory of your own",
            hint="give --out a new directory, or one of yours with mode 0700",
        )


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
