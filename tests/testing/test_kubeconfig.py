"""The control plane's kubeconfig documents, read back by Taskmill's own kubeconfig loader."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from taskmill.kube.config import from_kubeconfig
from taskmill.testing import kubeconfig

_CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
_CERT = b"-----BEGIN CERTIFICATE-----\nadmin\n-----END CERTIFICATE-----\n"
_KEY = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"


def test_an_admin_kubeconfig_carries_its_certificate_and_namespace(tmp_path: Path) -> None:
    document = kubeconfig.document(
        server="https://127.0.0.1:6443",
        ca_pem=_CA,
        user="taskmill-admin",
        credentials=kubeconfig.embedded_client_certificate(_CERT, _KEY),
        namespace="team-a",
    )
    path = kubeconfig.write(tmp_path / "sub" / "kubeconfig", document)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a private key
    config = from_kubeconfig([path])
    assert config.server == "https://127.0.0.1:6443"
    assert config.namespace == "team-a"
    assert config.ca_path is not None
    assert Path(config.ca_path).read_bytes() == _CA
    assert config.cert_path is not None
    assert Path(config.cert_path).read_bytes() == _CERT
    assert config.key_path is not None
    assert Path(config.key_path).read_bytes() == _KEY
    assert config.token is None


def test_a_token_kubeconfig_without_a_namespace(tmp_path: Path) -> None:
    document = kubeconfig.document(
        server="https://127.0.0.1:7443",
        ca_pem=_CA,
        user="token",
        credentials={"token": "abc.def"},
    )
    path = kubeconfig.write(tmp_path / "kubeconfig", document)
    assert "namespace" not in yaml.safe_load(path.read_text())["contexts"][0]["context"]
    config = from_kubeconfig([path])
    assert config.token == "abc.def"
    assert config.cert_path is None
    assert config.namespace == "default"
    assert document["current-context"] == kubeconfig.CONTEXT
