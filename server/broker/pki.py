"""The broker's TLS certificates: the operator's own, or a private CA kept under the data dir.

The CA is created once; its key never leaves `<data_dir>/pki` (mode 0600). The server
certificate is re-issued under the same CA when it nears expiry or no longer names the
broker's host, so devices, which trust the CA, need nothing when it is renewed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.broker.render import write_atomic
from server.settings import ServerSettings

log = logging.getLogger(__name__)

CA_DAYS = 20 * 365
SERVER_DAYS = 365
RENEW_WITHIN = timedelta(days=30)
# The demo's agents and the server's own tools connect by these names.
LOCAL_NAMES = ("localhost", "127.0.0.1")


class PkiError(RuntimeError):
    """A certificate file is missing or unusable; the message names the setting to fix."""


@dataclass(frozen=True)
class TlsFiles:
    """What the broker's TLS listener loads, and the CA devices must trust (None: public CA)."""

    certfile: Path
    keyfile: Path
    cafile: Path | None


def pki_dir(data_dir: Path) -> Path:
    """Where the private CA and the server certificate live."""
    return data_dir / "pki"


def operator_files(certfile: Path, keyfile: Path, cafile: Path | None) -> TlsFiles:
    """The operator's own certificate (e.g. Let's Encrypt's fullchain.pem and privkey.pem)."""
    for name, path in (("CERTFILE", certfile), ("KEYFILE", keyfile), ("CAFILE", cafile)):
        if path is not None and not path.is_file():
            raise PkiError(f"LOA_MQTT_TLS_{name} {path} does not exist")
    return TlsFiles(certfile=certfile.resolve(), keyfile=keyfile.resolve(), cafile=cafile)


def ensure_private_pki(
    directory: Path,
    *,
    hosts: Sequence[str],
    now: datetime | None = None,
    local_names: bool = True,
) -> TlsFiles:
    """Create the CA once, and (re-)issue the server certificate when it needs it."""
    now = now or datetime.now(UTC)
    names = list(dict.fromkeys([*hosts, *(LOCAL_NAMES if local_names else ())]))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    # Two server processes may start at once on one data dir: one CA, not two.
    with _locked(directory / ".lock"):
        ca_cert, ca_key = _ensure_ca(directory, now)
        cert_path = directory / "server.pem"
        reason = _renewal_reason(cert_path, ca_cert, names, now)
        if reason is not None:
            _issue_server_cert(directory, ca_cert, ca_key, names, now)
            log.info("issued the broker's TLS certificate for %s (%s)", ", ".join(names), reason)
    return TlsFiles(
        certfile=cert_path.resolve(),
        keyfile=(directory / "server.key").resolve(),
        cafile=(directory / "ca.pem").resolve(),
    )


def certificate_expiry(path: Path) -> datetime:
    """The notAfter of the first certificate in a PEM file."""
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_ca(
    directory: Path, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    if key_path.is_file() and cert_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_path} is not the EC key Loa writes; move it away to start over")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loa broker CA")])
    cert = (
        _builder(name, name, key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, _key_pem(key), mode=0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
    log.info("created the broker's private CA in %s", directory)
    return cert, key


def _renewal_reason(
    path: Path, ca_cert: x509.Certificate, names: Sequence[str], now: datetime
) -> str | None:
    if not path.is_file() or not path.with_name("server.key").is_file():
        return "none yet"
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc - now < RENEW_WITHIN:
        return f"the old one expires {cert.not_valid_after_utc:%Y-%m-%d}"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the old one is not from this CA"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    held = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    held |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    missing = [n for n in names if str(_general_name(n).value) not in held]
    return f"it did not name {', '.join(missing)}" if missing else None


def _issue_server_cert(
    directory: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: datetime,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Mosquitto reads both only at start and on the SIGHUP sent after both are written.
    write_atomic(directory / "server.key", _key_pem(key), mode=0o600)
    write_atomic(
        directory / "server.pem", cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # An hour of slack for devices whose clock is a little behind the server's.
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def broker_tls(settings: ServerSettings) -> TlsFiles | None:
    """The files of the TLS listener (None when LOA_MQTT_TLS_PORT is 0), renewed if due."""
    if settings.mqtt_tls_port == 0:
        return None
    certfile, keyfile = settings.mqtt_tls_certfile, settings.mqtt_tls_keyfile
    if certfile is not None or keyfile is not None:
        if certfile is None or keyfile is None:
            raise PkiError("set both LOA_MQTT_TLS_CERTFILE and LOA_MQTT_TLS_KEYFILE, or neither")
        return operator_files(certfile, keyfile, settings.mqtt_tls_cafile)
    return ensure_private_pki(pki_dir(settings.data_dir), hosts=[settings.device_mqtt_host])


def ca_pem(settings: ServerSettings) -> str | None:
    """The CA certificate devices must trust (None: the broker's certificate is public)."""
    files = broker_tls(settings)
    if files is None or files.cafile is None:
        return None
    return files.cafile.read_text()
