"""Reading kubeconfigs as kubectl does: merging, contexts, paths, TLS, proxies, users."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.kube import config
from taskmill.kube.config import ConfigError, KubeConfig
from taskmill.kube.exec_plugin import InteractiveMode


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def kubeconfig(
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    namespace: str | None = None,
    current: str | None = "main",
) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://10.0.0.1:6443", **(cluster or {})}}
        ],
        "users": [{"name": "u", "user": user or {"token": "t0"}}],
        "contexts": [{"name": "main", "context": context}],
    }
    if current:
        doc["current-context"] = current
    return doc


def test_the_context_gives_server_namespace_and_token(tmp_path: Path) -> None:
    path = write(tmp_path / "config", kubeconfig(namespace="team-a"))
    loaded = config.from_kubeconfig([path])
    assert loaded.server == "https://10.0.0.1:6443"
    assert loaded.namespace == "team-a"
    assert loaded.auth_headers() == {"Authorization": "Bearer t0"}


def test_a_context_is_chosen_by_name_and_without_namespace_is_default(tmp_path: Path) -> None:
    doc = kubeconfig(namespace="team-a")
    doc["clusters"].append({"name": "other", "cluster": {"server": "https://other:443/"}})
    doc["contexts"].append({"name": "second", "context": {"cluster": "other", "user": "u"}})
    path = write(tmp_path / "config", doc)
    loaded = config.from_kubeconfig([path], "second")
    assert (loaded.server, loaded.namespace) == ("https://other:443", "default")
    with pytest.raises(ConfigError, match="no context named 'missing'"):
        config.from_kubeconfig([path], "missing")


def test_merged_files_first_definition_wins_and_paths_are_relative_to_their_file(
    tmp_path: Path,
) -> None:
    first = write(
        tmp_path / "a" / "config",
        {"current-context": "main", "users": [{"name": "u", "user": {"tokenFile": "token"}}]},
    )
    (tmp_path / "a" / "token").write_text("from-a\n")
    second_doc = kubeconfig(cluster={"certificate-authority": "ca.crt"}, current="ignored")
    second_doc["users"] = [{"name": "u", "user": {"token": "from-b"}}]
    second = write(tmp_path / "b" / "config", second_doc)
    loaded = config.from_kubeconfig([first, second])
    assert loaded.token_path == str(tmp_path / "a" / "token")
    assert loaded.bearer_token() == "from-a"
    assert loaded.ca_path == str(tmp_path / "b" / "ca.crt")


def test_kubeconfig_env_wins_over_in_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "config", kubeconfig())
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert config.load().server == "https://10.0.0.1:6443"


def test_tls_server_name_proxy_and_insecure(tmp_path: Path) -> None:
    cluster = {
        "tls-server-name": "api.internal",
        "proxy-url": "http://proxy:3128",
        "insecure-skip-tls-verify": True,
        "certificate-authority": "ignored-when-insecure.crt",
    }
    loaded = config.from_kubeconfig([write(tmp_path / "config", kubeconfig(cluster=cluster))])
    assert loaded.tls_server_name == "api.internal"
    assert loaded.proxy_url == "http://proxy:3128"
    assert loaded.insecure
    assert loaded.ca_path is None
    context = loaded.ssl_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname


def test_a_socks_proxy_is_refused_clearly(tmp_path: Path) -> None:
    path = write(tmp_path / "config", kubeconfig(cluster={"proxy-url": "socks5://p:1080"}))
    with pytest.raises(ConfigError, match=r"only http:// and https:// proxies"):
        config.from_kubeconfig([path])


def test_basic_auth(tmp_path: Path) -> None:
    user = {"username": "ada", "password": "s3cret"}
    loaded = config.from_kubeconfig([write(tmp_path / "config", kubeconfig(user=user))])
    expected = base64.b64encode(b"ada:s3cret").decode()
    assert loaded.auth_headers() == {"Authorization": f"Basic {expected}"}


@pytest.mark.parametrize(
    ("provider", "successor"),
    [("gcp", "gke-gcloud-auth-plugin"), ("azure", "kubelogin"), ("oidc", "oidc-login")],
)
def test_auth_providers_are_refused_with_their_exec_successor(
    tmp_path: Path, provider: str, successor: str
) -> None:
    user = {"auth-provider": {"name": provider, "config": {}}}
    path = write(tmp_path / "config", kubeconfig(user=user))
    with pytest.raises(ConfigError, match=successor):
        config.from_kubeconfig([path])


def exec_user(**stanza: Any) -> dict[str, Any]:
    base = {"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token"}
    base["interactiveMode"] = "Never"
    return {"exec": {**base, **stanza}}


def test_exec_stanza_is_read(tmp_path: Path) -> None:
    user = exec_user(
        command="./bin/plugin",
        args=["--region", "eu"],
        env=[{"name": "PROFILE", "value": "prod"}],
        installHint="install it",
    )
    loaded = config.from_kubeconfig([write(tmp_path / "config", kubeconfig(user=user))])
    plugin = loaded.exec_plugin
    assert plugin is not None
    assert plugin.argv() == [str(tmp_path / "bin" / "plugin"), "--region", "eu"]
    assert plugin.env == (("PROFILE", "prod"),)
    assert plugin.interactive_mode is InteractiveMode.NEVER
    assert plugin.install_hint == "install it"
    assert plugin.cluster_json is None
    # A bare command name is left to PATH.
    bare = config.from_kubeconfig([write(tmp_path / "bare", kubeconfig(user=exec_user()))])
    assert bare.exec_plugin is not None
    assert bare.exec_plugin.argv() == ["get-token"]


def test_exec_cluster_info_carries_ca_data_and_the_extension(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    cluster = {
        "certificate-authority": "ca.crt",
        "tls-server-name": "api.internal",
        "extensions": [
            {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "x"}},
            {"name": "other", "extension": {}},
        ],
    }
    user = exec_user(provideClusterInfo=True)
    loaded = config.from_kubeconfig(
        [write(tmp_path / "config", kubeconfig(cluster=cluster, user=user))]
    )
    assert loaded.exec_plugin is not None
    info = json.loads(loaded.exec_plugin.cluster_json or "")
    assert info == {
        "server": "https://10.0.0.1:6443",
        "tls-server-name": "api.internal",
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
        "config": {"audience": "x"},
    }


@pytest.mark.parametrize(
    ("stanza", "complaint"),
    [
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "no longer supported"),
        ({"apiVersion": "example.com/v1"}, "apiVersion must be one of"),
        ({"command": ""}, "command is required"),
        ({"interactiveMode": None}, "interactiveMode is required"),
        ({"interactiveMode": "Sometimes"}, "is not one of Never, IfAvailable, Always"),
        ({"args": "--flag"}, "args must be a list"),
        ({"env": [{"value": "x"}]}, "needs a name"),
    ],
)
def test_bad_exec_stanzas_are_refused_naming_the_user(
    tmp_path: Path, stanza: dict[str, Any], complaint: str
) -> None:
    user = exec_user(**stanza)
    user["exec"] = {k: v for k, v in user["exec"].items() if v is not None}
    path = write(tmp_path / "config", kubeconfig(user=user))
    with pytest.raises(ConfigError, match=complaint) as raised:
        config.from_kubeconfig([path])
    assert "user 'u'" in str(raised.value)


def test_v1beta1_defaults_to_if_available(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "x"}}
    loaded = config.from_kubeconfig([write(tmp_path / "config", kubeconfig(user=user))])
    assert loaded.exec_plugin is not None
    assert loaded.exec_plugin.interactive_mode is InteractiveMode.IF_AVAILABLE


def test_a_config_survives_the_trip_to_a_child_process(tmp_path: Path) -> None:
    user = exec_user(args=["a"], env=[{"name": "N", "value": "v"}], provideClusterInfo=True)
    cluster = {"tls-server-name": "api", "proxy-url": "https://p:1"}
    loaded = config.from_kubeconfig(
        [write(tmp_path / "config", kubeconfig(cluster=cluster, user=user))]
    )
    data = json.loads(json.dumps(loaded.to_dict()))
    again = KubeConfig.from_dict(data)
    assert again == loaded
    assert again.exec_authenticator is not None
    assert again.exec_authenticator is not loaded.exec_authenticator


def test_unreadable_kubeconfigs_are_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        config.from_kubeconfig([tmp_path / "config"])
    (tmp_path / "config").write_text("{unclosed")
    with pytest.raises(ConfigError, match="not a valid kubeconfig"):
        config.from_kubeconfig([tmp_path / "config"])
