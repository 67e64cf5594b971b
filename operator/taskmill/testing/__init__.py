"""A real local control plane (kube-apiserver, etcd, kube-controller-manager)
for tests and for ``taskmill dev``; see ``controlplane``.

For tests of your own handlers and operators, the pytest plugin (installed
with ``taskmill[testing]``) provides the ``control_plane`` (session) and
``namespace`` (per test) fixtures; see ``docs/testing.md``. Directly::

    from taskmill.testing import ControlPlane

    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", "crds/")
        os.environ.update(cp.env())   # KUBECONFIG for clients

Modules:

- ``assets``: the pinned binaries, from ``KUBEBUILDER_ASSETS`` or built once
  from the Go module proxy into a per-user cache;
- ``pki``: a throw-away CA, serving and client certificates, signing keys,
  and the files a control plane reads them from;
- ``kubeconfig``: kubeconfig documents for the admin, tokens, the controller
  manager;
- ``flags``: each binary's default flags and how overrides merge into them;
- ``processes``: spawning, identifying (across pid reuse) and stopping a
  child process, free loopback ports;
- ``apiclient``: raw API requests, kubectl and ServiceAccount tokens;
- ``controlplane``: starting, attaching to and stopping the processes;
- ``pytest_plugin``: the fixtures.

The names below are imported lazily: the pytest plugin imports this package
in every pytest session, and ``cryptography`` (needed only to start a
control plane) may not be installed there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskmill.testing.assets import (
        AssetError,
        Assets,
        ensure_assets,
        ensure_helm,
    )
    from taskmill.testing.controlplane import (
        ControlPlane,
        ControlPlaneError,
        KubectlError,
        Response,
    )

__all__ = [
    "AssetError",
    "Assets",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "Response",
    "ensure_assets",
    "ensure_helm",
]

_HOMES = {
    "AssetError": "taskmill.testing.assets",
    "Assets": "taskmill.testing.assets",
    "ensure_assets": "taskmill.testing.assets",
    "ensure_helm": "taskmill.testing.assets",
    "ControlPlane": "taskmill.testing.controlplane",
    "ControlPlaneError": "taskmill.testing.controlplane",
    "KubectlError": "taskmill.testing.controlplane",
    "Response": "taskmill.testing.controlplane",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
