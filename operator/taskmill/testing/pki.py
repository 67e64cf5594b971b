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

The certificates and keys are made in memory; only :func:`write_control_plane_pki`
touches the file system: it issues the set above and writes it, readable by
its owner only, into one directory (:class:`PkiFiles` names each file), where
the processes' flags point.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCert",
    "KeyPair",
    "PkiFiles",
    "new_key_pair",
    "write_control_plane_pki",
    "write_private",
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


@dataclass(frozen=True)
class PkiFiles:
    """Where each file of a control plane's PKI is, in ``directory``."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate: it signed the API server's certificate and all client ones."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def controller_manager_cert(self) -> Path:
        return self.directory / "controller-manager.crt"

    @property
    def controller_manager_key(self) -> Path:
        return self.directory / "controller-manager.key"

    @property
    def service_account_key(self) -> Path:
        """The private key that signs ServiceAccount tokens."""
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (creating its directory), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_control_plane_pki(directory: Path, *, service_ip: str) -> PkiFiles:
    """Issue a fresh CA, the API server's serving certificate, the admin's and the
    controller manager's client certificates and the service-account key pair,
    and write them all to ``directory``.

    ``service_ip``, the ``kubernetes`` Service's address, is among the
    serving certificate's names, as in a real cluster.
    """
    files = PkiFiles(directory)
    ca = CertificateAuthority()
    serving = ca.issue(
        "kube-apiserver",
        dns_names=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        ip_addresses=["127.0.0.1", "::1", service_ip],
        server=True,
    )
    # The API server takes the user name from CN and groups from O.
    admin = ca.issue("taskmill-admin", organizations=["system:masters"], client=True)
    manager = ca.issue(
        "system:kube-controller-manager", organizations=["system:masters"], client=True
    )
    signing = new_key_pair()
    contents = {
        files.ca_cert: ca.cert_pem,
        files.ca_key: ca.key_pem,
        files.apiserver_cert: serving.cert_pem,
        files.apiserver_key: serving.key_pem,
        files.admin_cert: admin.cert_pem,
        files.admin_key: admin.key_pem,
        files.controller_manager_cert: manager.cert_pem,
        files.controller_manager_key: manager.key_pem,
        files.service_account_key: signing.private_pem,
        files.service_account_public_key: signing.public_pem,
    }
    for path, data in contents.items():
        write_private(path, data)
    return files
