"""A self-signed certificate for app-only certificate auth in tests (as `New-SelfSignedCertificate`
would make for an app registration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class AppCertificate:
    private_key_pem: str
    certificate_pem: str
    sha1_thumbprint: str  # hex, as the Entra portal shows it

    def msal_credential(self) -> dict[str, str]:
        """msal's `client_credential` dict (msal >= 1.35 derives a SHA-256 thumbprint)."""
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}


def make_certificate(
    common_name: str = "prevent-service-test", *, days: int = 365
) -> AppCertificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return AppCertificate(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra's thumbprint form
    )
