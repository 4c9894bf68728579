"""TLS for the device link: the client context, and one-line reasons for a refused broker."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code).
CERT_NOT_YET_VALID = 9
CERT_HAS_EXPIRED = 10
_DEPTH_ZERO_SELF_SIGNED = 18
_SELF_SIGNED_IN_CHAIN = 19
_UNKNOWN_ISSUER = (2, 20, 21)
_NAME_MISMATCH = (62, 64)
# A device clock before this cannot be right (no RTC and no time sync yet: often 1970).
PLAUSIBLE_SINCE = datetime(2025, 1, 1, tzinfo=UTC)


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify the broker's chain (ca_file, else the system's CAs) and its host name."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True)
class TlsRefusal:
    """A broker certificate the device refused: when (device clock), where, and why."""

    at: datetime
    host: str
    port: int
    reason: str
    clock_suspect: bool  # the device's clock, not the certificate, is probably wrong

    def summary(self) -> str:
        """One line for telemetry: `<when> <host>:<port>: <reason>`."""
        return f"{self.at:%Y-%m-%dT%H:%M:%SZ} {self.host}:{self.port}: {self.reason}"[:200]


def refusal(exc: ssl.SSLCertVerificationError, *, host: str, port: int) -> TlsRefusal:
    """Say in words why a broker's certificate was refused."""
    now = datetime.fromtimestamp(time.time(), UTC)
    clock = f"{now:%Y-%m-%d %H:%M} UTC"
    code = exc.verify_code
    detail = exc.verify_message or exc.reason or str(exc)
    suspect = code == CERT_NOT_YET_VALID or now < PLAUSIBLE_SINCE
    if code == CERT_NOT_YET_VALID:
        why = (
            f"the certificate is not valid yet by this device's clock ({clock}): "
            "the clock looks wrong (no RTC, time not synced yet); waiting for time sync"
        )
    elif code == CERT_HAS_EXPIRED:
        why = f"the certificate has expired (device clock {clock}; renew it on the server)"
    elif code in _NAME_MISMATCH:
        why = f"the certificate is not valid for the host name {host!r} (check mqtt_host)"
    elif code in (_DEPTH_ZERO_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN) or code in _UNKNOWN_ISSUER:
        why = "the certificate is not signed by the CA this device trusts (another broker?)"
    else:
        why = "the certificate failed verification"
    if suspect and code != CERT_NOT_YET_VALID:
        why += f"; also this device's clock ({clock}) looks wrong"
    return TlsRefusal(now, host, port, f"{why} [{detail}]", suspect)
