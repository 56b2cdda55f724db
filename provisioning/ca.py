"""The fleet's certificate authority: TLS keys and X.509 certificates (`cryptography.x509`).

One self-signed CA per fleet (`ca/ca.crt`, key `ca/ca.key`); it signs a client certificate
per identity (CN = the identity's name, extended key usage clientAuth) and the broker's
server certificate (subjectAltName: the configured host, 127.0.0.1 and localhost). Every key
is of the fleet's algorithm: ECDSA P-256 (default: the widest device support), Ed25519 or RSA-2048.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import FleetCorrupt
from .fleet import CaAlg

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
CA_DAYS = 20 * 365
BACKDATE = dt.timedelta(minutes=5)  # tolerate a little clock skew between machines


def generate_key(alg: CaAlg) -> PrivateKey:
    if alg == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file is protected by its 0600 mode."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(data: bytes, source: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise FleetCorrupt(f"{source} is not a PEM private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise FleetCorrupt(f"{source} holds a {type(key).__name__}, not a key this CA can use")
    return key


def load_cert(data: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise FleetCorrupt(f"{source} is not a PEM certificate: {exc}") from None


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass(frozen=True)
class Authority:
    """A CA key and its certificate, able to issue leaf certificates."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, fleet_name: str, alg: CaAlg, now: dt.datetime) -> Authority:
        key = generate_key(alg)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, fleet_name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{fleet_name} fleet CA"),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, _hash_for(key))
        )
        return cls(key, cert)

    def _leaf(self, cn: str, public: object, now: dt.datetime, days: int) -> x509.CertificateBuilder:
        org = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        subject = x509.Name([*(org[:1]), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(rsa_key=isinstance(public, rsa.RSAPublicKey)), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
            .add_extension(aki, critical=False)
        )

    def issue_client(self, cn: str, key: PrivateKey, now: dt.datetime, days: int) -> x509.Certificate:
        """A TLS client certificate for identity `cn`."""
        builder = self._leaf(cn, key.public_key(), now, days).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return builder.sign(self.key, _hash_for(self.key))

    def issue_server(
        self, host: str, key: PrivateKey, now: dt.datetime, days: int, *, also_client: bool = False
    ) -> x509.Certificate:
        """The broker's certificate: valid for `host`, 127.0.0.1 and localhost. `also_client`: a
        cluster node's, which also dials the other nodes (NATS routes are mutual TLS)."""
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if also_client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            self._leaf(host, key.public_key(), now, days)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(server_names(host)), critical=False)
        )
        return builder.sign(self.key, _hash_for(self.key))


def server_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    try:
        extra: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        extra = x509.DNSName(host)
    if extra not in names:
        names.insert(0, extra)
    return names


def _key_usage(*, cert_sign: bool = False, rsa_key: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def fingerprint(cert: x509.Certificate) -> str:
    """`sha256:<hex>` of the DER certificate, as `openssl x509 -fingerprint -sha256` shows it."""
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
