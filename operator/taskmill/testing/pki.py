"""Throw-away certificates and keys for a local control plane.

A control plane needs a small public-key infrastructure of its own:

- a **CA** that signs everything below; clients trust it (``ca.crt``) and the
  API server uses it to verify client certificates (``--client-ca-file``);
- a **serving certificate** for kube-apiserver, valid for the loopback
  addresses and for the in-cluster names (``kubernetes.default.svc`` and the
  first address of the service range, as a real cluster's would be);
- **client certificates**: the API server maps the subject's common name to
  the user and each organisation to a group, so ``O=system:masters`` makes a
  cluster administrator without any RBAC binding;
- a **service-account signing key pair**: the API server signs the tokens it
  issues (TokenRequest) with the private key and verifies them with the
  public key; the controller manager signs legacy token Secrets with it.

All keys are ECDSA P-256: generating one takes microseconds where an RSA key
takes tens of milliseconds, and every Kubernetes component accepts them. The
certificates live as long as the control plane does, so they are valid from
an hour in the past (tolerating clock skew) for ``validity`` after that.

Nothing here touches the file system; :mod:`taskmill.testing.controlplane`
writes the PEM bytes where the processes expect them.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCert",
    "KeyPair",
    "new_key_pair",
]

_DEFAULT_VALIDITY = datetime.timedelta(days=365)
_BACKDATE = datetime.timedelta(hours=1)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class KeyPair:
    """A private key and its public half, both PEM-encoded."""

    private_pem: bytes
    public_pem: bytes


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its private key, both PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


def _new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 ("BEGIN PRIVATE KEY") is the encoding every consumer reads:
    # Go's crypto/tls, kubectl, OpenSSL and Python's ssl module.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_key_pair() -> KeyPair:
    """A fresh signing key pair (for ``--service-account-signing-key-file``)."""
    key = _new_private_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem=_private_pem(key), public_pem=public)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates."""

    def __init__(
        self,
        common_name: str = "taskmill-test-ca",
        *,
        validity: datetime.timedelta = _DEFAULT_VALIDITY,
    ) -> None:
        self._key = _new_private_key()
        self._validity = validity
        subject = _name(common_name)
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self._key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str | IPAddress] = (),
        server: bool = False,
        client: bool = False,
    ) -> IssuedCert:
        """Sign a leaf certificate for a new key.

        ``server`` and ``client`` choose the extended key usages; Go's TLS
        stack checks them, so a client certificate without ``client`` is
        refused by the API server.
        """
        if not (server or client):
            raise ValueError("a certificate must be for server or client use (or both)")
        key = _new_private_key()
        now = datetime.datetime.now(datetime.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + self._validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_private_pem(key)
        )
