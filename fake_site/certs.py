"""The fake site's TLS material: a private CA and one leaf certificate.

The leaf carries the SANs ``flattr.com``, ``api.flattr.com``, ``files.flattr.com``,
``localhost`` and ``127.0.0.1`` so the same certificate serves the site, the API and the push
socket whether a client dials the names (Chromium ``--host-resolver-rules``) or
the loopback address. Browsers accept it through
``--ignore-certificate-errors-spki-list=<spki>``; Python clients trust ``ca.pem``.
Files are created once and reused from the directory given.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SAN_NAMES = ("flattr.com", "api.flattr.com", "files.flattr.com", "localhost")
SAN_IPS = ("127.0.0.1",)
# 397 days: under the 398-day ceiling browsers apply to server certificates.
LEAF_DAYS = 397
CA_DAYS = 3650


@dataclass(frozen=True)
class CertFiles:
    """Paths of the PEM files and the leaf's SPKI pin."""

    ca: Path
    cert: Path
    key: Path
    spki: str

    def server_context(self) -> ssl.SSLContext:
        """An SSL context serving the leaf certificate (with the CA as chain)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def spki_pin(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _generate(directory: Path) -> None:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Flattr Test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SAN_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SAN_IPS]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flattr.com")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write_key(directory / "ca-key.pem", ca_key)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "leaf-key.pem", leaf_key)
    # The leaf file holds the chain (leaf then CA) so TLS clients get both.
    (directory / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )


def _has_sans(leaf: x509.Certificate) -> bool:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(SAN_NAMES) <= set(names.get_values_for_type(x509.DNSName))


def ensure_certs(directory: Path) -> CertFiles:
    """Load the CA and leaf from ``directory``, generating them on first use.

    A leaf that expires within a day, or lacks one of the SANs (files kept from
    an older version), is regenerated together with its CA.
    """
    ca, cert, key = directory / "ca.pem", directory / "leaf.pem", directory / "leaf-key.pem"
    if not (ca.exists() and cert.exists() and key.exists()):
        _generate(directory)
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    if leaf.not_valid_after_utc < soon or not _has_sans(leaf):
        _generate(directory)
        leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    return CertFiles(ca=ca, cert=cert, key=key, spki=spki_pin(leaf))


def client_context(ca: Path) -> ssl.SSLContext:
    """An SSL client context that trusts only the fake site's CA."""
    return ssl.create_default_context(cafile=str(ca))
