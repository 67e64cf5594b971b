"""Fetching the release binaries: verified downloads from a loopback HTTP server, and fallbacks.

The server serves archives built here (a shell script standing in for each
binary); the Go build that a failed fetch falls back to is replaced by a
builder function that records that it ran, since a real build takes minutes.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.testing import assets, downloads
from taskmill.testing.downloads import Download, FetchError, Platform

FAKE_ETCD = b"#!/bin/sh\necho etcd fake\n"
FAKE_APISERVER = b"#!/bin/sh\necho kube-apiserver fake\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar_gz(files: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/bin/sh"
            tar.addfile(link)
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in files.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


class ReleaseServer:
    """A loopback HTTP server serving ``files`` by path; 404 for anything else.

    A path in ``stalled`` answers with its headers and half its body, then
    sends nothing more until the server is stopped.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.stalled: set[str] = set()
        self.requests: list[str] = []
        self._release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.path in server.stalled:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    server._release.wait(30)
                    return
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> ReleaseServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    with ReleaseServer() as running:
        yield running


class Builder:
    """Stands in for the Go build: records that it ran and writes a fake binary."""

    def __init__(self, target: Path | None = None) -> None:
        self.calls = 0
        self.target = target

    def __call__(self) -> None:
        self.calls += 1
        if self.target is not None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.target.write_bytes(b"#!/bin/sh\necho built\n")


def _refuse_to_build() -> None:
    raise AssertionError("the fetch should have succeeded without building")


def _etcd_archive(server: ReleaseServer, *, data: bytes = FAKE_ETCD) -> Download:
    server.files["/etcd.tar.gz"] = _tar_gz({"etcd-v3.6.16-linux-amd64/etcd": data})
    return Download(
        f"{server.base}/etcd.tar.gz",
        "tar.gz",
        (("etcd-v3.6.16-linux-amd64/etcd", "etcd"),),
        sha256=_sha256(server.files["/etcd.tar.gz"]),
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


# --- fetch and verify ----------------------------------------------------------------------


def test_pinned_archive_is_verified_unpacked_and_installed(
    server: ReleaseServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "assets" / "etcd-v3.6.16"
    download = _etcd_archive(server)
    assets.fetch_or_build(
        "etcd v3.6.16", target, lambda: [download], _refuse_to_build, mode="fetch"
    )
    etcd = target / "etcd"
    assert etcd.read_bytes() == FAKE_ETCD
    assert os.access(etcd, os.X_OK)
    assert _leftovers(target) == ["etcd"]  # no scratch directory, no archive
    err = capsys.readouterr().err
    assert f"downloading {download.url} (0 MB)" in err
    assert "fetched etcd v3.6.16 in " in err


def test_published_checksum_file_is_read_for_a_zip(server: ReleaseServer, tmp_path: Path) -> None:
    archive = _zip({"etcd-v3.6.16-darwin-arm64/etcd": FAKE_ETCD})
    server.files["/v3.6.16/etcd-v3.6.16-darwin-arm64.zip"] = archive
    server.files["/v3.6.16/SHA256SUMS"] = (
        f"{'0' * 64}  etcd-v3.6.16-linux-amd64.tar.gz\n"
        f"{_sha256(archive)}  etcd-v3.6.16-darwin-arm64.zip\n"
    ).encode()
    download = Download(
        f"{server.base}/v3.6.16/etcd-v3.6.16-darwin-arm64.zip",
        "zip",
        (("etcd-v3.6.16-darwin-arm64/etcd", "etcd"),),
        checksum_url=f"{server.base}/v3.6.16/SHA256SUMS",
    )
    assets.fetch_or_build("etcd", tmp_path, lambda: [download], _refuse_to_build, mode="fetch")
    assert (tmp_path / "etcd").read_bytes() == FAKE_ETCD


def test_several_binaries_with_bare_digest_files(server: ReleaseServer, tmp_path: Path) -> None:
    """The dl.k8s.io layout: each binary bare, its ``.sha256`` holding just the digest."""
    plan = []
    binaries = {"kube-apiserver": FAKE_APISERVER, "kube-controller-manager": FAKE_ETCD}
    for name, data in binaries.items():
        server.files[f"/bin/linux/amd64/{name}"] = data
        server.files[f"/bin/linux/amd64/{name}.sha256"] = _sha256(data).encode()
        url = f"{server.base}/bin/linux/amd64/{name}"
        plan.append(Download(url, "binary", ((name, name),), checksum_url=f"{url}.sha256"))
    assets.fetch_or_build("kubernetes", tmp_path, lambda: plan, _refuse_to_build, mode="fetch")
    assert (tmp_path / "kube-apiserver").read_bytes() == FAKE_APISERVER
    assert (tmp_path / "kube-controller-manager").read_bytes() == FAKE_ETCD
    assert _leftovers(tmp_path) == ["kube-apiserver", "kube-controller-manager"]


def test_checksum_mismatch_is_refused_and_leaves_nothing(
    server: ReleaseServer, tmp_path: Path
) -> None:
    download = _etcd_archive(server)
    server.files["/etcd.tar.gz"] = _tar_gz({"etcd-v3.6.16-linux-amd64/etcd": b"tampered"})
    target = tmp_path / "etcd-v3.6.16"
    with pytest.raises(assets.AssetError, match=r"not the expected .*refused.*ASSETS=fetch"):
        assets.fetch_or_build("etcd", target, lambda: [download], _refuse_to_build, mode="fetch")
    assert _leftovers(target) == []


def test_checksum_mismatch_falls_back_to_the_build(
    server: ReleaseServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download = _etcd_archive(server)
    server.files["/etcd.tar.gz"] = _tar_gz({"etcd-v3.6.16-linux-amd64/etcd": b"tampered"})
    target = tmp_path / "etcd-v3.6.16"
    builder = Builder(target / "etcd")
    assets.fetch_or_build("etcd v3.6.16", target, lambda: [download], builder, mode="auto")
    assert builder.calls == 1
    assert (target / "etcd").read_bytes() == b"#!/bin/sh\necho built\n"
    assert _leftovers(target) == ["etcd"]
    [line] = [line for line in capsys.readouterr().err.splitlines() if "could not fetch" in line]
    assert line.startswith("taskmill: could not fetch etcd v3.6.16 (")
    assert "not the expected" in line
    assert line.endswith("building it with Go instead")


def test_one_failure_installs_none_of_the_plan(server: ReleaseServer, tmp_path: Path) -> None:
    """kube-apiserver verifies, kube-controller-manager is missing: neither is installed."""
    server.files["/kube-apiserver"] = FAKE_APISERVER
    plan = [
        Download(
            f"{server.base}/kube-apiserver",
            "binary",
            (("kube-apiserver", "kube-apiserver"),),
            sha256=_sha256(FAKE_APISERVER),
        ),
        Download(
            f"{server.base}/kube-controller-manager",
            "binary",
            (("kube-controller-manager", "kube-controller-manager"),),
            sha256="0" * 64,
        ),
    ]
    builder = Builder()
    assets.fetch_or_build("kubernetes", tmp_path, lambda: plan, builder, mode="auto")
    assert builder.calls == 1
    assert _leftovers(tmp_path) == []


def test_missing_file_falls_back_to_the_build(
    server: ReleaseServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download = Download(
        f"{server.base}/nothing.tar.gz", "tar.gz", (("etcd", "etcd"),), sha256="0" * 64
    )
    builder = Builder()
    assets.fetch_or_build("etcd", tmp_path, lambda: [download], builder, mode="auto")
    assert builder.calls == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert server.requests == ["/nothing.tar.gz"]


def test_missing_checksum_file_is_not_skipped(server: ReleaseServer, tmp_path: Path) -> None:
    """Without its checksum file an archive is not downloaded at all."""
    server.files["/etcd.tar.gz"] = _tar_gz({"etcd": FAKE_ETCD})
    download = Download(
        f"{server.base}/etcd.tar.gz",
        "tar.gz",
        (("etcd", "etcd"),),
        checksum_url=f"{server.base}/SHA256SUMS",
    )
    with pytest.raises(assets.AssetError, match="HTTP 404"):
        assets.fetch_or_build("etcd", tmp_path, lambda: [download], _refuse_to_build, mode="fetch")
    assert server.requests == ["/SHA256SUMS"]
    assert _leftovers(tmp_path) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_refused_connection_falls_back_at_once(tmp_path: Path) -> None:
    download = Download(
        f"http://127.0.0.1:{_closed_port()}/etcd.tar.gz",
        "tar.gz",
        (("etcd", "etcd"),),
        sha256="0" * 64,
    )
    builder = Builder()
    started = time.monotonic()
    assets.fetch_or_build("etcd", tmp_path, lambda: [download], builder, mode="auto")
    assert time.monotonic() - started < 2
    assert builder.calls == 1


def test_a_host_that_never_answers_is_given_up_after_the_connect_timeout(tmp_path: Path) -> None:
    """A listener that never reads stands for a filtered network or a hung DNS lookup."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        download = Download(
            f"http://127.0.0.1:{silent.getsockname()[1]}/etcd.tar.gz",
            "tar.gz",
            (("etcd", "etcd"),),
            sha256="0" * 64,
        )
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"did not answer within 0\.3s"):
            downloads.fetch(download, tmp_path / "work", connect_timeout=0.3)
        assert time.monotonic() - started < 3


def test_a_stalled_download_is_given_up(server: ReleaseServer, tmp_path: Path) -> None:
    download = _etcd_archive(server)
    server.stalled.add("/etcd.tar.gz")
    with pytest.raises(FetchError, match="download interrupted"):
        downloads.fetch(download, tmp_path / "work", read_timeout=0.3)


def test_archive_without_the_binary_is_refused(server: ReleaseServer, tmp_path: Path) -> None:
    server.files["/etcd.tar.gz"] = _tar_gz({"etcd-v3.6.16-linux-amd64/README.md": b"hi"})
    download = Download(
        f"{server.base}/etcd.tar.gz",
        "tar.gz",
        (("etcd-v3.6.16-linux-amd64/etcd", "etcd"),),
        sha256=_sha256(server.files["/etcd.tar.gz"]),
    )
    with pytest.raises(FetchError, match=r"holds no etcd-v3\.6\.16-linux-amd64/etcd"):
        downloads.fetch(download, tmp_path / "work")


def test_a_link_in_place_of_the_binary_is_refused(server: ReleaseServer, tmp_path: Path) -> None:
    server.files["/etcd.tar.gz"] = _tar_gz({}, symlink="etcd")
    download = Download(
        f"{server.base}/etcd.tar.gz",
        "tar.gz",
        (("etcd", "etcd"),),
        sha256=_sha256(server.files["/etcd.tar.gz"]),
    )
    with pytest.raises(FetchError, match="not a regular file"):
        downloads.fetch(download, tmp_path / "work")


def test_build_mode_never_fetches(tmp_path: Path) -> None:
    def no_plan() -> list[Download]:
        raise AssertionError("TASKMILL_ASSETS=build must not look for downloads")

    builder = Builder()
    assets.fetch_or_build("etcd", tmp_path, no_plan, builder, mode="build")
    assert builder.calls == 1


def test_platform_without_release_binaries_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builder = Builder()
    darwin = Platform("darwin", "arm64")
    assets.fetch_or_build(
        "kube-apiserver v1.37.2",
        tmp_path,
        lambda: downloads.kubernetes_downloads("v1.37.2", darwin, ["kube-apiserver"]),
        builder,
        mode="auto",
    )
    assert builder.calls == 1
    assert "no server binaries for darwin/arm64" in capsys.readouterr().err


# --- the modes ---------------------------------------------------------------------------------


def test_assets_mode_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_ASSETS", raising=False)
    assert assets.assets_mode() == "auto"
    monkeypatch.setenv("TASKMILL_ASSETS", " Fetch ")
    assert assets.assets_mode() == "fetch"
    monkeypatch.setenv("TASKMILL_ASSETS", "download")
    with pytest.raises(assets.AssetError, match="'download' is not one of auto, fetch, build"):
        assets.assets_mode()


def test_cached_binaries_are_used_without_fetching(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cache layout is the same whether a binary was fetched or built."""
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("TASKMILL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TASKMILL_ASSETS", "fetch")
    layout = {
        "etcd": f"etcd-{assets.ETCD_VERSION}",
        "kube-apiserver": f"kubernetes-{assets.KUBERNETES_VERSION}",
        "kube-controller-manager": f"kubernetes-{assets.KUBERNETES_VERSION}",
        "helm": f"helm-{assets.HELM_VERSION}",
    }
    for name, directory in layout.items():
        (tmp_path / "assets" / directory).mkdir(parents=True, exist_ok=True)
        (tmp_path / "assets" / directory / name).write_bytes(FAKE_ETCD)
    found = assets.ensure_assets()
    assert found.etcd == tmp_path / "assets" / layout["etcd"] / "etcd"
    assert found.kube_apiserver == tmp_path / "assets" / layout["kube-apiserver"] / "kube-apiserver"
    assert assets.ensure_helm() == tmp_path / "assets" / layout["helm"] / "helm"
    monkeypatch.setenv("TASKMILL_ASSETS", "fecth")
    with pytest.raises(assets.AssetError, match="TASKMILL_ASSETS='fecth'"):
        assets.ensure_assets()


# --- what is fetched from where ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Linux", "x86_64", "linux/amd64"),
        ("Linux", "aarch64", "linux/arm64"),
        ("Darwin", "arm64", "darwin/arm64"),
        ("Darwin", "x86_64", "darwin/amd64"),
        ("Linux", "riscv64", None),
        ("Windows", "AMD64", None),
        ("FreeBSD", "amd64", None),
    ],
)
def test_current_platform(system: str, machine: str, expected: str | None) -> None:
    found = downloads.current_platform(system, machine)
    assert (str(found) if found else None) == expected


def test_kubernetes_comes_from_dl_k8s_io_checked_by_its_sha256_files() -> None:
    plan = downloads.kubernetes_downloads(
        "v1.37.2", Platform("linux", "arm64"), ["kube-apiserver", "kube-controller-manager"]
    )
    assert [d.url for d in plan] == [
        "https://dl.k8s.io/release/v1.37.2/bin/linux/arm64/kube-apiserver",
        "https://dl.k8s.io/release/v1.37.2/bin/linux/arm64/kube-controller-manager",
    ]
    assert [d.checksum_url for d in plan] == [f"{d.url}.sha256" for d in plan]
    assert [d.members for d in plan] == [
        (("kube-apiserver", "kube-apiserver"),),
        (("kube-controller-manager", "kube-controller-manager"),),
    ]
    with pytest.raises(FetchError, match="no server binaries for darwin/amd64"):
        downloads.kubernetes_downloads("v1.37.2", Platform("darwin", "amd64"), ["kube-apiserver"])
    with pytest.raises(FetchError, match="no server binaries"):
        downloads.kubernetes_downloads("v1.37.2", None, ["kube-apiserver"])


def test_etcd_comes_from_its_github_release() -> None:
    [linux] = downloads.etcd_downloads("v3.6.16", Platform("linux", "amd64"))
    assert linux.url == (
        "https://github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz"
    )
    assert (
        linux.checksum_url == "https://github.com/etcd-io/etcd/releases/download/v3.6.16/SHA256SUMS"
    )
    assert linux.members == (("etcd-v3.6.16-linux-amd64/etcd", "etcd"),)
    [mac] = downloads.etcd_downloads("v3.6.16", Platform("darwin", "arm64"))
    assert (mac.format, mac.filename) == ("zip", "etcd-v3.6.16-darwin-arm64.zip")


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"])
def test_helm_is_pinned_for_every_platform(platform: str) -> None:
    os_name, arch = platform.split("/")
    [helm] = downloads.helm_downloads(assets.HELM_VERSION, Platform(os_name, arch))  # type: ignore[arg-type]
    pair = f"{os_name}-{arch}"
    assert helm.url == f"https://get.helm.sh/helm-{assets.HELM_VERSION}-{pair}.tar.gz"
    assert helm.members == ((f"{pair}/helm", "helm"),)
    assert helm.sha256 is not None
    assert helm.checksum_url is None


def test_helm_without_a_pinned_digest_is_not_fetched() -> None:
    with pytest.raises(FetchError, match=r"no pinned SHA-256 of helm v9\.9\.9"):
        downloads.helm_downloads("v9.9.9", Platform("linux", "amd64"))


def test_download_needs_exactly_one_way_to_check_it() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Download("https://x/a", "binary", (("a", "a"),))
    with pytest.raises(ValueError, match="exactly one"):
        Download("https://x/a", "binary", (("a", "a"),), sha256="0" * 64, checksum_url="https://x")
    with pytest.raises(ValueError, match="hex SHA-256"):
        Download("https://x/a", "binary", (("a", "a"),), sha256="ABC")


# --- checksum files ------------------------------------------------------------------------------


def test_parse_checksums_formats() -> None:
    digest = "ab" * 32
    assert downloads.parse_checksums(f"{digest}  helm.tar.gz\n", "helm.tar.gz") == digest
    assert downloads.parse_checksums(f"{digest} *helm.tar.gz\n", "helm.tar.gz") == digest
    assert downloads.parse_checksums(f"{digest.upper()}\n", "kube-apiserver") == digest
    assert downloads.parse_checksums(f"{digest}  ./dist/etcd.zip", "etcd.zip") == digest
    with pytest.raises(FetchError, match=r"no SHA-256 for etcd\.zip"):
        downloads.parse_checksums(f"{digest}  other.zip\n", "etcd.zip")
    with pytest.raises(FetchError, match="no SHA-256"):
        downloads.parse_checksums("<html>Not Found</html>", "etcd.zip")


_NAMES = st.from_regex(r"[a-z][a-z0-9.-]{0,20}\.tar\.gz", fullmatch=True)
_DIGESTS = st.binary(min_size=1).map(_sha256)


@given(st.dictionaries(_NAMES, _DIGESTS, min_size=1, max_size=8), st.booleans())
def test_parse_checksums_finds_each_listed_file(entries: dict[str, str], binary: bool) -> None:
    marker = "*" if binary else " "
    text = "".join(f"{digest} {marker}{name}\n" for name, digest in entries.items())
    for name, digest in entries.items():
        assert downloads.parse_checksums(text, name) == digest
