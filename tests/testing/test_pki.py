"""The throw-away PKI: certificates chain to the CA and work in a real mutual-TLS handshake."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from taskmill.testing import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority("test-ca")


def test_ca_is_a_ca(ca: pki.CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)


def test_serving_cert_names_and_usage(ca: pki.CertificateAuthority) -> None:
    issued = ca.issue(
        "kube-apiserver",
        dns_names=["localhost", "kubernetes.default.svc"],
        ip_addresses=["127.0.0.1", "10.0.0.1"],
        server=True,
    )
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "kubernetes.default.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "10.0.0.1",
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_carries_groups_as_organizations(ca: pki.CertificateAuthority) -> None:
    issued = ca.issue("alice", organizations=["system:masters", "devs"], client=True)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["alice"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters",
        "devs",
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_certificate_needs_a_purpose(ca: pki.CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="server or client"):
        ca.issue("nobody")


def test_signing_key_pair_matches() -> None:
    pair = pki.new_key_pair()
    private = serialization.load_pem_private_key(pair.private_pem, password=None)
    public = serialization.load_pem_public_key(pair.public_pem)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_mutual_tls_handshake(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    """The certificates do what the API server and its clients need of them."""
    server = ca.issue("server", dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    client = ca.issue("client", organizations=["system:masters"], client=True)
    for name, data in {
        "ca.crt": ca.cert_pem,
        "server.crt": server.cert_pem,
        "server.key": server.key_pem,
        "client.crt": client.cert_pem,
        "client.key": client.key_pem,
    }.items():
        (tmp_path / name).write_bytes(data)

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server_context.load_verify_locations(tmp_path / "ca.crt")
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")

    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=10)
    peer = seen["peer"]
    assert isinstance(peer, dict)
    assert (("commonName", "client"),) in peer["subject"]


def test_a_control_plane_pki_is_written_private_and_chains_to_its_ca(tmp_path: Path) -> None:
    files = pki.write_control_plane_pki(tmp_path / "pki", service_ip="10.0.0.1")
    written = sorted(p.name for p in files.directory.iterdir())
    assert len(written) == 10
    for path in files.directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(files.apiserver_cert.read_bytes())
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.0.0.1") in names.get_values_for_type(x509.IPAddress)
    for cert_path in (files.admin_cert, files.controller_manager_cert):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        organisations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert [o.value for o in organisations] == ["system:masters"]
    signing = serialization.load_pem_private_key(files.service_account_key.read_bytes(), None)
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == files.service_account_public_key.read_bytes()
