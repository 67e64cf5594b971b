"""Locating and building the control plane's binaries (no building here; fetching is in
test_downloads)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from taskmill.testing import assets

KUBERNETES_GOMOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.10.0
\tk8s.io/api v0.0.0
\tk8s.io/apimachinery v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery // a comment
\tgithub.com/some/fork => github.com/other/fork v1.2.3
\tk8s.io/api => ./staging/src/k8s.io/api
)

replace k8s.io/client-go => ./staging/src/k8s.io/client-go
replace k8s.io/kms v0.0.0 => ./staging/src/k8s.io/kms
"""


def test_staging_modules_are_read_from_gomod() -> None:
    assert assets.staging_modules(KUBERNETES_GOMOD) == [
        "k8s.io/api",
        "k8s.io/apimachinery",
        "k8s.io/client-go",
        "k8s.io/kms",
    ]


def test_staging_modules_of_the_real_release() -> None:
    """When the Go module cache holds the pinned release, its staging list is complete."""
    gomod = (
        Path(os.environ.get("GOMODCACHE", Path.home() / "go/pkg/mod"))
        / f"cache/download/k8s.io/kubernetes/@v/{assets.KUBERNETES_VERSION}.mod"
    )
    if not gomod.exists():
        pytest.skip(f"{gomod} not downloaded")
    modules = assets.staging_modules(gomod.read_text())
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go"} <= set(modules)
    assert len(modules) > 25


def test_staging_version() -> None:
    assert assets.staging_version("v1.37.2") == "v0.37.2"
    assert assets.staging_version("v1.38.0-rc.1") == "v0.38.0-rc.1"
    with pytest.raises(ValueError, match=r"Kubernetes 1\.x"):
        assets.staging_version("v2.0.0")


def test_wrapper_gomod_replaces_staging_with_published_versions() -> None:
    text = assets.kubernetes_wrapper_gomod(
        "v1.37.2", ["k8s.io/api", "k8s.io/client-go"], go_version="1.26.0"
    )
    lines = [line.strip() for line in text.splitlines()]
    assert "go 1.26.0" in lines
    assert "require k8s.io/kubernetes v1.37.2" in lines
    assert "k8s.io/api => k8s.io/api v0.37.2" in lines
    assert "k8s.io/client-go => k8s.io/client-go v0.37.2" in lines


def test_kubernetes_ldflags_stamp_both_version_packages() -> None:
    flags = assets.kubernetes_ldflags("v1.37.2", build_date="2026-10-27T12:01:04Z")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.37.2" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=37" in flags
        assert f"-X {package}.gitTreeState=clean" in flags
        assert f"-X {package}.buildDate=2026-10-27T12:01:04Z" in flags
    assert "-X k8s.io/component-base/version.gitCommit= " in flags  # unknown: empty
    assert "gitCommit=abc" in assets.kubernetes_ldflags("v1.37.2", commit="abc")


def test_helm_ldflags_pin_the_kubernetes_version_it_was_built_for() -> None:
    gomod = "module helm.sh/helm/v3\n\nrequire (\n\tk8s.io/client-go v0.37.0\n)\n"
    flags = assets.helm_ldflags("v3.22.0", gomod)
    assert "-X helm.sh/helm/v3/internal/version.version=v3.22.0" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in flags
    assert "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" in flags


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TASKMILL_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TASKMILL_CACHE_DIR")
    assert assets.cache_dir() == tmp_path / "xdg" / "taskmill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.cache_dir() == tmp_path / "home" / ".cache" / "taskmill"


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_kubebuilder_assets_are_used_as_they_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("etcd", "kube-apiserver", "kubectl"):
        _executable(tmp_path / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    found = assets.ensure_assets()
    assert found == assets.Assets(
        etcd=tmp_path / "etcd",
        kube_apiserver=tmp_path / "kube-apiserver",
        kube_controller_manager=None,  # not there: not built either
        kubectl=tmp_path / "kubectl",
    )
    _executable(tmp_path / "kube-controller-manager")
    assert assets.ensure_assets().kube_controller_manager == tmp_path / "kube-controller-manager"
    assert assets.ensure_assets(controller_manager=False).kube_controller_manager is None


def test_kubebuilder_assets_without_apiserver_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _executable(tmp_path / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(assets.AssetError, match="has no kube-apiserver"):
        assets.ensure_assets()


def test_missing_go_names_the_alternative(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("TASKMILL_ASSETS", "build")  # no download attempt: building is the point
    monkeypatch.setenv("TASKMILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(assets.AssetError, match="KUBEBUILDER_ASSETS"):
        assets.ensure_assets()


def test_build_lock_is_exclusive(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second builder waits for the first, saying so (flock: per open file, so a thread works)."""
    monkeypatch.setenv("TASKMILL_CACHE_DIR", str(tmp_path))
    lock_file = tmp_path / "assets" / ".build.lock"
    order: list[str] = []

    def second() -> None:
        with assets._build_lock():
            order.append("second")

    with assets._build_lock():
        with lock_file.open("a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 10
        seen = ""
        while "waiting for another process" not in seen:
            assert time.monotonic() < deadline, "the second builder never waited"
            seen += capsys.readouterr().err
            time.sleep(0.01)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]


def test_command_line_prints_the_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        _executable(tmp_path / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert assets.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"etcd={tmp_path / 'etcd'}",
        f"kube-apiserver={tmp_path / 'kube-apiserver'}",
        f"kube-controller-manager={tmp_path / 'kube-controller-manager'}",
        f"kubectl={tmp_path / 'kubectl'}",
    ]


def test_package_re_exports_lazily() -> None:
    import taskmill.testing as testing
    from taskmill.testing.controlplane import ControlPlane

    assert testing.ControlPlane is ControlPlane
    assert testing.ensure_assets is assets.ensure_assets
    with pytest.raises(AttributeError):
        _ = testing.NoSuchThing
