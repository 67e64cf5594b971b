"""The binaries' default flags and how overrides merge into them (no processes run)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from taskmill.testing import flags
from taskmill.testing.pki import PkiFiles


def test_build_flags_overrides_adds_and_removes() -> None:
    defaults = {"etcd-servers": "http://a", "secure-port": "6443", "allow-privileged": "true"}
    merged = flags.build_flags(
        defaults,
        {"--secure-port": "7443", "allow-privileged": None, "max-requests-inflight": "800"},
    )
    assert merged == [
        "--etcd-servers=http://a",
        "--secure-port=7443",
        "--max-requests-inflight=800",
    ]
    assert flags.build_flags(defaults) == [
        "--etcd-servers=http://a",
        "--secure-port=6443",
        "--allow-privileged=true",
    ]


_names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_values = st.text(alphabet="xyz=,:/", min_size=0, max_size=5)


@given(
    defaults=st.dictionaries(_names, _values),
    overrides=st.dictionaries(
        st.tuples(_names, st.booleans()).map(lambda t: f"--{t[0]}" if t[1] else t[0]),
        st.none() | _values,
    ),
)
def test_build_flags_lets_each_override_win(
    defaults: dict[str, str], overrides: dict[str, str | None]
) -> None:
    result = flags.build_flags(defaults, overrides)
    parsed = [arg.removeprefix("--").split("=", 1) for arg in result]
    names = [name for name, _ in parsed]
    assert all(arg.startswith("--") for arg in result)
    assert len(names) == len(set(names))  # one flag per name
    final = {name: value for name, value in parsed}
    # "--a" and "a" are one name: the later of the two overrides counts.
    wanted: dict[str, str | None] = dict(defaults)
    for name, value in overrides.items():
        wanted[name.removeprefix("--")] = value
    assert final == {name: value for name, value in wanted.items() if value is not None}
    # Defaults keep their order, ahead of the names only overrides bring.
    kept = [name for name in defaults if name in final]
    assert names[: len(kept)] == kept


def test_etcd_listens_on_loopback_only() -> None:
    defaults = flags.etcd_defaults(data_dir=Path("/w/etcd"), client_port=2379, peer_port=2390)
    assert defaults["data-dir"] == "/w/etcd"
    assert defaults["listen-client-urls"] == "http://127.0.0.1:2379"
    # Without an explicit peer URL etcd binds :2380 on every interface.
    assert defaults["listen-peer-urls"] == "http://127.0.0.1:2390"
    assert defaults["initial-cluster"] == "taskmill=http://127.0.0.1:2390"
    assert "unsafe-no-fsync" not in defaults


def test_apiserver_uses_the_pki_files_and_enforces_rbac() -> None:
    pki = PkiFiles(Path("/w/pki"))
    defaults = flags.apiserver_defaults(
        port=6443, etcd_url="http://127.0.0.1:2379", pki=pki, service_accounts=True
    )
    assert defaults["secure-port"] == "6443"
    assert defaults["bind-address"] == "127.0.0.1"
    assert defaults["authorization-mode"] == "RBAC"
    assert defaults["client-ca-file"] == str(pki.ca_cert)
    assert defaults["tls-cert-file"] == str(pki.apiserver_cert)
    assert defaults["service-account-key-file"] == str(pki.service_account_public_key)
    assert defaults["service-account-signing-key-file"] == str(pki.service_account_key)
    assert "disable-admission-plugins" not in defaults


def test_apiserver_without_service_accounts_admits_pods_anyway() -> None:
    defaults = flags.apiserver_defaults(
        port=6443,
        etcd_url="http://127.0.0.1:2379",
        pki=PkiFiles(Path("/w/pki")),
        service_accounts=False,
    )
    assert defaults["disable-admission-plugins"] == "ServiceAccount"


def test_controller_manager_runs_the_default_controllers_without_a_port() -> None:
    pki = PkiFiles(Path("/w/pki"))
    defaults = flags.controller_manager_defaults(kubeconfig=Path("/w/cm.kubeconfig"), pki=pki)
    assert defaults["kubeconfig"] == "/w/cm.kubeconfig"
    assert defaults["controllers"].split(",") == list(flags.DEFAULT_CONTROLLERS)
    assert defaults["secure-port"] == "0"
    assert defaults["service-account-private-key-file"] == str(pki.service_account_key)
