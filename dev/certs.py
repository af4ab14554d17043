"""Throw-away certificates for the local Kafka broker's TLS listener (and for tests that must fail).

Why our own script and not ``keytool``/``openssl``: the ``cryptography`` package is already in the
project's virtualenv, so no tool has to be installed, and the files come out exactly as Kafka's
``ssl.keystore.type=PEM`` and Python's ``ssl`` module want them:

* ``ca.pem`` - the test CA that clients trust (``ssl_cafile`` / ``kafka.tls.ca_file``);
* ``broker-keystore.pem`` - the broker's PKCS#8 private key followed by its certificate and the CA
  (Kafka's PEM key store reads key and chain from one file);
* ``broker.pem`` / ``broker-key.pem`` - the same certificate and key on their own, for other tools;
* ``other-ca.pem`` - a second, unrelated CA: a client that trusts only this one must reject the
  broker, which is how tests prove certificate verification is really on.

The broker certificate names ``IP:127.0.0.1`` and ``DNS:localhost`` so clients keep hostname
verification on.  Keys are EC P-256: generating them takes milliseconds, where RSA would add
noticeable time to a cold start.  The set is reused while every file parses, the names match and
more than :data:`RENEW_BEFORE` of validity is left; otherwise all of it is regenerated (a broker
restart picks the new files up).  CA private keys are never written: nothing re-signs later.

Usage: ``python -m dev.certs [DIR]`` (default ``.cache/run/kafka-certs``) prints the file paths.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dev._common import RUN

DEFAULT_DIR = RUN / "kafka-certs"
#: Names the broker certificate carries (SAN); clients connect to one of them with verification on.
BROKER_IPS = ("127.0.0.1",)
BROKER_DNS = ("localhost",)
VALIDITY = dt.timedelta(days=90)
#: Regenerate when less than this is left, so a long-lived cache never serves an expiring cert.
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where one generated set lives; every path is absolute."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def broker_cert(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def broker_key(self) -> Path:
        return self.directory / "broker-key.pem"

    @property
    def broker_keystore(self) -> Path:
        return self.directory / "broker-keystore.pem"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca.pem"

    def all(self) -> tuple[Path, ...]:
        return (self.ca, self.broker_cert, self.broker_key, self.broker_keystore, self.other_ca)


def ensure(directory: Path = DEFAULT_DIR) -> CertFiles:
    """Return a usable certificate set in ``directory``, generating one when needed."""
    files = CertFiles(directory.resolve())
    if not _usable(files):
        generate(files.directory)
    return files


def generate(directory: Path) -> CertFiles:
    """Write a fresh CA, broker certificate and unrelated CA into ``directory`` (replacing files)."""
    files = CertFiles(directory.resolve())
    files.directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key, ca_cert = _ca("kafka-backup dev CA", now)
    _, other_cert = _ca("kafka-backup unrelated test CA", now)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address(ip)) for ip in BROKER_IPS] + [x509.DNSName(n) for n in BROKER_DNS])
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-backup dev broker")]))
        .issuer_name(ca_cert.subject)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(broker_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    broker_pem = broker_cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(files.ca, ca_pem)
    _write(files.other_ca, other_cert.public_bytes(serialization.Encoding.PEM))
    _write(files.broker_cert, broker_pem + ca_pem)
    _write(files.broker_key, key_pem, private=True)
    _write(files.broker_keystore, key_pem + broker_pem + ca_pem, private=True)
    return files


def _ca(name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _usable(files: CertFiles) -> bool:
    """Every file present, the broker cert signed for our names and valid for a while yet."""
    try:
        if not all(p.is_file() for p in files.all()):
            return False
        certs = [x509.load_pem_x509_certificate(p.read_bytes()) for p in (files.ca, files.other_ca, files.broker_cert)]
        serialization.load_pem_private_key(files.broker_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if any(c.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE for c in certs):
        return False
    try:
        san = certs[2].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names = set(san.get_values_for_type(x509.DNSName))
    if not (ips >= set(BROKER_IPS) and names >= set(BROKER_DNS)):
        return False
    try:
        certs[2].verify_directly_issued_by(certs[0])
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write via a temporary file and rename, so a concurrent reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    files = ensure(Path(argv[0]) if argv else DEFAULT_DIR)
    for label, path in (("ca", files.ca), ("broker_keystore", files.broker_keystore),
                        ("broker_cert", files.broker_cert), ("broker_key", files.broker_key),
                        ("other_ca", files.other_ca)):
        print(f"{label}={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
