"""The control plane's command lines: default flags of etcd, kube-apiserver and
kube-controller-manager, and how a user's overrides merge into them.

Each ``*_defaults`` function is pure: it is given the ports and paths it
needs and returns ``{flag name: value}``; :func:`build_flags` turns that and
the user's overrides into ``--name=value`` arguments. Running the binaries,
and the files the paths point to, are :mod:`taskmill.testing.controlplane`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmill.testing.pki import PkiFiles

__all__ = [
    "DEFAULT_CONTROLLERS",
    "KUBERNETES_SERVICE_IP",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CLUSTER_IP_RANGE",
    "apiserver_defaults",
    "build_flags",
    "controller_manager_defaults",
    "etcd_defaults",
]

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range is the `kubernetes` Service's.
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# What a test of an operator needs from kube-controller-manager, and no more
# (every controller is CPU taken from the API server on a small machine).
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "garbage-collector-controller",  # ownerReference cascading deletion
    "namespace-controller",  # namespace deletion finishes
    "resourcequota-controller",  # quota status, without which quota admission cannot count
    "serviceaccount-controller",  # a `default` ServiceAccount in each namespace
    "serviceaccount-token-controller",  # legacy token Secrets
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt in each namespace
    "clusterrole-aggregation-controller",  # admin/edit/view pick up aggregated rules
    "cronjob-controller",  # the peer CronTask timing is compared with
    "job-controller",
    "ttl-after-finished-controller",
    "deployment-controller",  # a chart's Deployments get ReplicaSets and (Pending) Pods
    "replicaset-controller",
)


def build_flags(
    defaults: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> list[str]:
    """Command-line flags from ``defaults`` updated by ``overrides``.

    Names may be given with or without the leading ``--``; an override of
    ``None`` drops a default flag. Order is that of ``defaults``, then new
    names in the order given, so a process's command line reads predictably.
    """
    merged: dict[str, str | None] = {name.removeprefix("--"): v for name, v in defaults.items()}
    for name, value in (overrides or {}).items():
        merged[name.removeprefix("--")] = value
    return [f"--{name}={value}" for name, value in merged.items() if value is not None]


def etcd_defaults(*, data_dir: Path, client_port: int, peer_port: int) -> dict[str, str]:
    """A single-member etcd serving plain HTTP on loopback.

    The peer URL is explicit: without it etcd binds ``:2380`` on every interface.
    """
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return {
        "name": "taskmill",
        "data-dir": str(data_dir),
        "listen-client-urls": client,
        "advertise-client-urls": client,
        "listen-peer-urls": peer,
        "initial-advertise-peer-urls": peer,
        "initial-cluster": f"taskmill={peer}",
        "log-level": "warn",
        # fsync stays on (no --unsafe-no-fsync): crash tests need real durability.
    }


def apiserver_defaults(
    *, port: int, etcd_url: str, pki: PkiFiles, service_accounts: bool
) -> dict[str, str]:
    """kube-apiserver on loopback with RBAC enforced and client certificates from ``pki``.

    ``service_accounts``: whether a controller manager will create each
    namespace's ``default`` ServiceAccount.
    """
    flags = {
        "etcd-servers": etcd_url,
        "secure-port": str(port),
        "bind-address": "127.0.0.1",
        "advertise-address": "127.0.0.1",
        # The endpoint reconciler publishes the advertise address as the
        # `kubernetes` Service's endpoint and refuses a loopback one; with
        # no Pods to use that Service, there is nothing to reconcile.
        "endpoint-reconciler-type": "none",
        "cert-dir": str(pki.directory),
        "tls-cert-file": str(pki.apiserver_cert),
        "tls-private-key-file": str(pki.apiserver_key),
        "client-ca-file": str(pki.ca_cert),
        "authorization-mode": "RBAC",
        "service-account-issuer": SERVICE_ACCOUNT_ISSUER,
        "service-account-key-file": str(pki.service_account_public_key),
        "service-account-signing-key-file": str(pki.service_account_key),
        "service-cluster-ip-range": SERVICE_CLUSTER_IP_RANGE,
        "allow-privileged": "true",
    }
    if not service_accounts:
        # Without the service-account controller no namespace gets its
        # `default` ServiceAccount, and this admission plugin would then
        # refuse every Pod.
        flags["disable-admission-plugins"] = "ServiceAccount"
    return flags


def controller_manager_defaults(*, kubeconfig: Path, pki: PkiFiles) -> dict[str, str]:
    """kube-controller-manager running :data:`DEFAULT_CONTROLLERS` as one identity."""
    return {
        "kubeconfig": str(kubeconfig),
        "leader-elect": "false",
        "service-account-private-key-file": str(pki.service_account_key),
        "root-ca-file": str(pki.ca_cert),
        # No serving port: readiness is judged by what the controllers do.
        "secure-port": "0",
        # One identity (in system:masters) for all controllers, rather than
        # a ServiceAccount each that would need the bootstrap RBAC roles.
        "use-service-account-credentials": "false",
        "controllers": ",".join(DEFAULT_CONTROLLERS),
    }
